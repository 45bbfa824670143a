/* Unit tests: what the MTA named by macro v does with a reply to an unknown command. */
#include <check.h>
#include <stdlib.h>

#include "mta.h"

static const char *replaced(const char *v, int code)
{
	struct mta m;
	mta_identify(&m, v);
	return mta_unknown_reply(&m, code);
}

START_TEST(postfix_3_10_and_newer_replace_5xx)
{
	const char *versions[] = {
		"Postfix 3.10.13", "Postfix 3.10.0", "Postfix 3.11.6", "Postfix 3.11-20250601",
		"Postfix 3.10", "Postfix 4.0.0", "Postfix 10.1.2",
	};
	for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++) {
		ck_assert_str_eq(replaced(versions[i], 502), "500 5.5.2 Error: command not recognized");
		ck_assert_str_eq(replaced(versions[i], 550), MTA_POSTFIX_UNKNOWN_REPLY);
	}
}
END_TEST

START_TEST(tempfail_and_421_pass_everywhere)
{
	ck_assert_ptr_null(replaced("Postfix 3.10.13", 450));
	ck_assert_ptr_null(replaced("Postfix 3.10.13", 421));
	ck_assert_ptr_null(replaced("Postfix 3.10.13", 0));
	ck_assert_ptr_null(replaced("Postfix 3.10.13", 600));
}
END_TEST

START_TEST(older_postfix_and_others_send_ours)
{
	const char *versions[] = {
		"Postfix 3.7.11", "Postfix 3.9.3", "Postfix 2.11.3", "Postfix 3.1-20160101",
		"8.17.1.9",                 /* Sendmail */
		"", "Postfix", "Postfix ", "Postfix x.10", "Postfix 3.", "Postfix 3.x",
		"Postfix 3.10x", "postfix 3.10.13", "Postfixx 3.10.13", " Postfix 3.10.13",
		"Postfix 99999.1", "Postfix 3.99999",
	};
	for (size_t i = 0; i < sizeof versions / sizeof versions[0]; i++)
		ck_assert_msg(replaced(versions[i], 502) == NULL, "%s", versions[i]);
	ck_assert_ptr_null(replaced(NULL, 502));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("mta");
	TCase *t = tcase_create("mta");
	tcase_add_test(t, postfix_3_10_and_newer_replace_5xx);
	tcase_add_test(t, tempfail_and_421_pass_everywhere);
	tcase_add_test(t, older_postfix_and_others_send_ours);
	suite_add_tcase(s, t);
	SRunner *r = srunner_create(s);
	srunner_run_all(r, CK_NORMAL);
	int failed = srunner_ntests_failed(r);
	srunner_free(r);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
