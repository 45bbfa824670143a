/*
 * netmatch: addresses, prefixes and a path-compressed binary trie.
 *
 * Every address is a 128-bit key (IPv4 as ::ffff:a.b.c.d).  The table is a
 * Patricia trie: each node names a prefix (key, len), and a child is only
 * present where stored prefixes actually diverge, so the depth follows the
 * number of distinct branch points, not the 128 bits of the key.  A node
 * either terminates a stored prefix (it has values) or is a pure branch
 * point (no values).  Nodes live in one array and refer to each other by
 * index, which keeps them small (40 bytes) and cheap to free.
 */
#include "netmatch.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- addresses ---------------------------------------------------------- */

static const unsigned char v4_mapped_head[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
};

static void set_v4(struct netaddr *out, const void *four_bytes)
{
	memcpy(out->b, v4_mapped_head, sizeof v4_mapped_head);
	memcpy(out->b + 12, four_bytes, 4);
}

bool netaddr_is_v4(const struct netaddr *a)
{
	return memcmp(a->b, v4_mapped_head, sizeof v4_mapped_head) == 0;
}

int netaddr_parse(const char *text, struct netaddr *out)
{
	unsigned char buf[16];

	/*
	 * inet_pton is strict already: no whitespace, no trailing junk, no
	 * short forms like "1.2.3", no "%zone" suffix.
	 */
	if (text == NULL || out == NULL)
		return -1;
	if (inet_pton(AF_INET, text, buf) == 1) {
		set_v4(out, buf);
		return 0;
	}
	if (inet_pton(AF_INET6, text, buf) == 1) {
		memcpy(out->b, buf, sizeof buf);
		return 0;
	}
	return -1;
}

int netaddr_from_sockaddr(const struct sockaddr *sa, struct netaddr *out)
{
	if (sa == NULL || out == NULL)
		return -1;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
		set_v4(out, &sin->sin_addr);
		return 0;
	}
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
		memcpy(out->b, &sin6->sin6_addr, sizeof out->b);
		return 0;
	}
	return -1;
}

void netaddr_format(const struct netaddr *a, char *buf, size_t size)
{
	const char *ok;

	if (buf == NULL || size == 0)
		return;
	if (size > NETADDR_TEXT_MAX)
		size = NETADDR_TEXT_MAX; /* all inet_ntop needs; fits socklen_t */
	if (netaddr_is_v4(a))
		ok = inet_ntop(AF_INET, a->b + 12, buf, (socklen_t)size);
	else
		ok = inet_ntop(AF_INET6, a->b, buf, (socklen_t)size);
	if (ok == NULL)
		buf[0] = '\0'; /* buffer too small: never leave garbage */
}

/* ---- prefixes ----------------------------------------------------------- */

/* Clears every bit of a at or after position len (0 = most significant). */
static void clear_host_bits(struct netaddr *a, unsigned len)
{
	for (unsigned i = 0; i < 16; i++) {
		unsigned first = i * 8;
		if (len >= first + 8)
			continue;
		if (len <= first)
			a->b[i] = 0;
		else
			a->b[i] &= (unsigned char)(0xff00u >> (len - first));
	}
}

/* 1 to 3 decimal digits and nothing else; -1 otherwise. */
static int parse_len(const char *s)
{
	int n = 0;
	size_t i;

	for (i = 0; s[i] != '\0'; i++) {
		if (i == 3 || s[i] < '0' || s[i] > '9')
			return -1;
		n = n * 10 + (s[i] - '0');
	}
	return i == 0 ? -1 : n;
}

/* Parses text into *p; NULL, or the reason it is not a prefix. */
static const char *parse_prefix(const char *text, struct netprefix *p)
{
	char host[INET6_ADDRSTRLEN];
	const char *slash = strchr(text, '/');
	size_t hostlen = slash ? (size_t)(slash - text) : strlen(text);
	struct netaddr masked;
	bool v4;
	int n;

	if (hostlen >= sizeof host)
		return "not an IP address";
	memcpy(host, text, hostlen);
	host[hostlen] = '\0';
	if (netaddr_parse(host, &p->addr) != 0)
		return "not an IP address";

	/* The family of the text, not of the address, sets the length scale. */
	v4 = strchr(host, ':') == NULL;
	if (slash == NULL) {
		p->len = 128;
		return NULL;
	}
	n = parse_len(slash + 1);
	if (n < 0)
		return "bad prefix length";
	if (v4 && n > 32)
		return "prefix length exceeds 32";
	if (n > 128)
		return "prefix length exceeds 128";
	p->len = v4 ? 96 + (unsigned)n : (unsigned)n;

	masked = p->addr;
	clear_host_bits(&masked, p->len);
	if (memcmp(&masked, &p->addr, sizeof masked) != 0)
		return "host bits set";
	return NULL;
}

int netprefix_parse(const char *text, struct netprefix *out, const char **why)
{
	struct netprefix p;
	const char *reason = "not an IP address";

	if (text != NULL && out != NULL)
		reason = parse_prefix(text, &p);
	if (reason != NULL) {
		if (why != NULL)
			*why = reason;
		return -1;
	}
	*out = p; /* only on success: *out is untouched otherwise */
	return 0;
}

/* ---- 128-bit keys ------------------------------------------------------- */

/* key[0] holds bits 0..63 (the first eight bytes), key[1] bits 64..127. */
typedef uint64_t key128[2];

/* Written out so compilers turn it into one load and a byte swap. */
static uint64_t load_be64(const unsigned char *p)
{
	return (uint64_t)p[0] << 56 | (uint64_t)p[1] << 48 | (uint64_t)p[2] << 40 |
	       (uint64_t)p[3] << 32 | (uint64_t)p[4] << 24 | (uint64_t)p[5] << 16 |
	       (uint64_t)p[6] << 8 | (uint64_t)p[7];
}

static void key_load(const struct netaddr *a, key128 k)
{
	k[0] = load_be64(a->b);
	k[1] = load_be64(a->b + 8);
}

/* Bit i of k, counted from the most significant; i < 128. */
static unsigned key_bit(const key128 k, unsigned i)
{
	return (unsigned)(k[i / 64] >> (63 - i % 64)) & 1u;
}

/* The bits of word w (0 or 1) that lie within the first len bits. */
static uint64_t word_mask(unsigned len, unsigned w)
{
	unsigned bits = len > 64 * w ? len - 64 * w : 0;

	if (bits >= 64)
		return ~UINT64_C(0);
	if (bits == 0)
		return 0; /* avoids a shift by 64 */
	return ~UINT64_C(0) << (64 - bits);
}

static void key_mask(key128 k, unsigned len)
{
	k[0] &= word_mask(len, 0);
	k[1] &= word_mask(len, 1);
}

/* Whether a starts with the first len bits of p. */
static bool key_has_prefix(const key128 a, const key128 p, unsigned len)
{
	return ((a[0] ^ p[0]) & word_mask(len, 0)) == 0 &&
	       ((a[1] ^ p[1]) & word_mask(len, 1)) == 0;
}

/* Number of leading bits a and b share, 0..128. */
static unsigned key_common(const key128 a, const key128 b)
{
	unsigned n = 0;

	for (unsigned w = 0; w < 2; w++) {
		uint64_t x = a[w] ^ b[w];
		if (x == 0) {
			n += 64;
			continue;
		}
		while (!(x & (UINT64_C(1) << 63))) {
			x <<= 1;
			n++;
		}
		return n;
	}
	return n;
}

/* ---- the table ---------------------------------------------------------- */

/*
 * The value set of a node is sorted and duplicate-free.  One value (the
 * common case: a prefix named by one rule) is kept inline; more live in a
 * heap array whose capacity is the smallest power of two >= nvals, so no
 * capacity field is needed.
 */
struct node {
	key128 key;         /* the prefix; bits past len are zero */
	uint32_t child[2];  /* by bit len of the key; 0 = none (root is 0) */
	union {
		unsigned one;   /* nvals == 1 */
		unsigned *many; /* nvals >= 2 */
	} v;
	unsigned nvals;     /* 0: a branch point, not a stored prefix */
	unsigned char len;  /* 0..128 */
};

struct nettable {
	struct node *nodes; /* nodes[0] is the root, ::/0 */
	size_t nnodes;
	size_t cap;
	size_t nprefixes;
};

static const unsigned *node_values(const struct node *n)
{
	return n->nvals == 1 ? &n->v.one : n->v.many;
}

static unsigned values_cap(unsigned nvals)
{
	unsigned c = 2;

	while (c < nvals)
		c *= 2;
	return c;
}

/* Index of the first value >= from, or n when there is none. */
static unsigned lower_bound(const unsigned *vals, unsigned n, unsigned from)
{
	unsigned lo = 0, hi = n;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		if (vals[mid] < from)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Adds value to n's set; 0, or -1 on ENOMEM with the set unchanged. */
static int node_add_value(struct node *n, unsigned value)
{
	const unsigned *old = node_values(n);
	unsigned pos = lower_bound(old, n->nvals, value);
	unsigned *vals;

	if (pos < n->nvals && old[pos] == value)
		return 0;
	if (n->nvals == 0) {
		n->v.one = value;
		n->nvals = 1;
		return 0;
	}
	if (n->nvals >= UINT_MAX / 2)
		return -1;
	if (n->nvals == 1) {
		vals = malloc(2 * sizeof *vals);
		if (vals == NULL)
			return -1;
		vals[0] = n->v.one;
		n->v.many = vals;
	} else if (values_cap(n->nvals + 1) > values_cap(n->nvals)) {
		vals = realloc(n->v.many, (size_t)values_cap(n->nvals + 1) * sizeof *vals);
		if (vals == NULL)
			return -1;
		n->v.many = vals;
	}
	vals = n->v.many;
	memmove(vals + pos + 1, vals + pos, (n->nvals - pos) * sizeof *vals);
	vals[pos] = value;
	n->nvals++;
	return 0;
}

struct nettable *nettable_new(void)
{
	struct nettable *t = calloc(1, sizeof *t);

	if (t == NULL)
		return NULL;
	t->cap = 16;
	t->nodes = calloc(t->cap, sizeof *t->nodes);
	if (t->nodes == NULL) {
		free(t);
		return NULL;
	}
	t->nnodes = 1; /* the root: ::/0 without values */
	return t;
}

void nettable_free(struct nettable *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nnodes; i++)
		if (t->nodes[i].nvals >= 2)
			free(t->nodes[i].v.many);
	free(t->nodes);
	free(t);
}

/* Makes room for `more` nodes; node pointers are stale afterwards. */
static int reserve_nodes(struct nettable *t, size_t more)
{
	struct node *nodes;
	size_t cap;

	if (t->nnodes + more <= t->cap)
		return 0;
	if (t->cap > UINT32_MAX / 2)
		return -1; /* indices are 32-bit */
	cap = t->cap * 2;
	nodes = realloc(t->nodes, cap * sizeof *nodes);
	if (nodes == NULL)
		return -1;
	t->nodes = nodes;
	t->cap = cap;
	return 0;
}

/* Appends a node (room must be reserved) and returns its index. */
static uint32_t new_node(struct nettable *t, const key128 key, unsigned len)
{
	struct node *n = &t->nodes[t->nnodes];

	memset(n, 0, sizeof *n);
	n->key[0] = key[0];
	n->key[1] = key[1];
	key_mask(n->key, len);
	n->len = (unsigned char)len;
	return (uint32_t)t->nnodes++;
}

/* Finds or creates the node for (key, len); UINT32_MAX on ENOMEM. */
static uint32_t find_or_insert(struct nettable *t, const key128 key, unsigned len)
{
	uint32_t cur = 0;

	/* At most two nodes are added; reserving first means no failure later. */
	if (reserve_nodes(t, 2) != 0)
		return UINT32_MAX;

	for (;;) {
		/* Invariant: nodes[cur] is a prefix of key and its len <= len. */
		struct node *n = &t->nodes[cur];
		unsigned b, common;
		uint32_t c, mid, leaf;
		struct node *child;

		if (n->len == len)
			return cur;
		b = key_bit(key, n->len);
		c = n->child[b];
		if (c == 0) {
			leaf = new_node(t, key, len);
			t->nodes[cur].child[b] = leaf;
			return leaf;
		}
		child = &t->nodes[c];
		common = key_common(key, child->key);
		if (common > len)
			common = len;
		if (common >= child->len) {
			cur = c; /* the child is a prefix of key: go down */
			continue;
		}
		/*
		 * key and child part ways at bit `common` (or key ends there):
		 * put a node of length `common` between n and child.
		 */
		mid = new_node(t, key, common);
		t->nodes[mid].child[key_bit(t->nodes[c].key, common)] = c;
		if (common < len) {
			leaf = new_node(t, key, len);
			t->nodes[mid].child[key_bit(key, common)] = leaf;
		} else {
			leaf = mid;
		}
		t->nodes[cur].child[b] = mid;
		return leaf;
	}
}

int nettable_add(struct nettable *t, const struct netprefix *p, unsigned value)
{
	key128 key;
	uint32_t i;
	bool fresh;

	if (t == NULL || p == NULL || p->len > 128)
		return -1;
	key_load(&p->addr, key);
	key_mask(key, p->len);

	/*
	 * Only an existing node can fail to take a value (a fresh one stores
	 * it inline), so a failure here leaves the trie as it was.
	 */
	i = find_or_insert(t, key, p->len);
	if (i == UINT32_MAX)
		return -1;
	fresh = t->nodes[i].nvals == 0;
	if (node_add_value(&t->nodes[i], value) != 0)
		return -1;
	if (fresh)
		t->nprefixes++;
	return 0;
}

bool nettable_first_from(const struct nettable *t, const struct netaddr *a,
			 unsigned from, unsigned *found)
{
	key128 key;
	uint32_t cur = 0;
	bool any = false;
	unsigned best = 0;

	if (t == NULL || a == NULL)
		return false;
	key_load(a, key);

	for (;;) {
		const struct node *n = &t->nodes[cur];

		/* Below a node that does not contain a, nothing does. */
		if (!key_has_prefix(key, n->key, n->len))
			break;
		if (n->nvals > 0) {
			const unsigned *vals = node_values(n);
			unsigned i = lower_bound(vals, n->nvals, from);
			if (i < n->nvals && (!any || vals[i] < best)) {
				best = vals[i];
				any = true;
				if (best == from)
					break; /* nothing can beat it */
			}
		}
		if (n->len == 128)
			break;
		cur = n->child[key_bit(key, n->len)];
		if (cur == 0)
			break;
	}
	if (any && found != NULL)
		*found = best;
	return any;
}

size_t nettable_size(const struct nettable *t)
{
	return t ? t->nprefixes : 0;
}
