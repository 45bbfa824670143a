/*
 * netmatch: addresses, prefixes and a prefix table.
 *
 * Every address is a 128-bit key (IPv4 as ::ffff:a.b.c.d).  The table is a
 * path-compressed binary (Patricia) trie: a node exists only where a
 * stored prefix ends or where stored prefixes part ways, so its depth
 * follows the data, not the 128 bits of the key.  Three additions keep a
 * lookup in a big table close to one in a small one:
 *
 *  - jump tables skip the dense top of the trie (see JUMP_BITS);
 *  - every node knows the deepest stored prefix at or above it, and every
 *    stored prefix its nearest stored ancestor (`up`), so the stored
 *    prefixes containing an address form one chain, found by walking
 *    down without looking at values;
 *  - each stored prefix caches the smallest value on its chain, so the
 *    usual lookup (from = 0) reads one value instead of every match.
 *
 * Nodes and prefix records live in arrays and refer to each other by
 * 32-bit index.  Building is single-threaded; a built table is only read.
 */
#include "netmatch.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

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
 * The trie is made of nodes; a node is a prefix (key, len) that is either
 * stored (it has a record with values) or only a branch point where
 * stored prefixes part ways.  Every node knows the deepest stored prefix
 * at or above it, so a lookup needs no bookkeeping on the way down.  Nodes
 * are 32 bytes and 64-byte aligned in their array, so each step of a
 * lookup reads one cache line; the rest of a stored prefix is its record.
 */
struct node {
	key128 key;           /* the prefix; bits past len are zero */
	uint32_t child[2];    /* by bit `len` of an address; 0 = none */
	uint32_t prefix;      /* deepest stored prefix at or above; 0 = none */
	unsigned char len;    /* 0..128 */
	unsigned char stored; /* whether `prefix` is this node's own */
};

_Static_assert(sizeof(struct node) == 32, "a node should fill half a cache line");

/*
 * A stored prefix.  `up` is the nearest stored prefix containing it and
 * `chain_min` the smallest value on it or anywhere up that chain, so a
 * lookup that starts from 0 (the usual case) reads one record instead of
 * every match.  The value set is sorted and duplicate-free; one value (a
 * prefix named by one rule) is kept inline, more live in a heap array in
 * t->sets whose capacity is the smallest power of two >= nvals.
 */
struct prefix {
	uint32_t up;        /* 0 = none */
	unsigned chain_min;
	unsigned nvals;     /* >= 1 */
	unsigned v;         /* nvals == 1: the value; else its index in t->sets */
};

/*
 * The top of the trie is a dense binary tree (in a big table every /8 of
 * IPv4 is busy), so walking it from the root would cost 16 or more steps.
 * Two jump tables skip it: one for IPv4 indexed by its first 16 bits, one
 * for everything else by the first 16 bits of the IPv6 address.  An entry
 * is where the walk for an address in that block may start: the deepest
 * node that is a prefix of the whole block.  All zero (the root) is right
 * for an empty table, so the tables start zeroed.  The fuzz target builds
 * with fewer bits: the same code, with fills 256 times cheaper.
 */
#ifndef NETMATCH_JUMP_BITS
#define NETMATCH_JUMP_BITS 16
#endif
#define JUMP_BITS NETMATCH_JUMP_BITS
_Static_assert(JUMP_BITS >= 1 && JUMP_BITS <= 32, "a block is cut from one 64-bit word");
#define JUMP_SIZE ((size_t)1 << JUMP_BITS)

/* The two jump spaces: [0] all of IPv6, [1] IPv4 (::ffff:0:0/96). */
static const key128 space_key[2] = { { 0, 0 }, { 0, UINT64_C(0xffff00000000) } };
static const unsigned space_len[2] = { 0, 96 };

struct nettable {
	struct node *nodes;      /* [0] is the root, ::/0 */
	size_t nnodes, node_cap;
	struct prefix *prefixes; /* [0] is unused, so 0 can mean none */
	size_t nprefixes, prefix_cap;
	unsigned **sets;         /* value arrays of prefixes with several */
	size_t nsets, set_cap;
	uint32_t (*jump)[JUMP_SIZE]; /* [2][JUMP_SIZE]: by space, then block */
};

static bool key_is_v4(const key128 k)
{
	return key_has_prefix(k, space_key[1], space_len[1]);
}

/* The block of k within a space: the JUMP_BITS bits after its prefix. */
static size_t block_of(const key128 k, unsigned space)
{
	unsigned from = space_len[space];

	return (size_t)(k[from / 64] >> (64 - JUMP_BITS - from % 64)) & (JUMP_SIZE - 1);
}

static const unsigned *prefix_values(const struct nettable *t, const struct prefix *p)
{
	return p->nvals == 1 ? &p->v : t->sets[p->v];
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

/* Adds value to p's set (nvals >= 1); 0, or -1 on ENOMEM with p unchanged. */
static int prefix_add_value(struct nettable *t, struct prefix *p, unsigned value)
{
	const unsigned *old = prefix_values(t, p);
	unsigned pos = lower_bound(old, p->nvals, value);
	unsigned *vals;

	if (pos < p->nvals && old[pos] == value)
		return 0;
	if (p->nvals >= UINT_MAX / 2)
		return -1;
	if (p->nvals == 1) {
		/* Moves out of line: a set slot and a two-value array. */
		if (t->nsets == t->set_cap) {
			size_t cap = t->set_cap ? t->set_cap * 2 : 8;
			unsigned **sets = realloc(t->sets, cap * sizeof *sets);
			if (sets == NULL)
				return -1;
			t->sets = sets;
			t->set_cap = cap;
		}
		vals = malloc(2 * sizeof *vals);
		if (vals == NULL)
			return -1;
		vals[0] = p->v;
		p->v = (unsigned)t->nsets;
		t->sets[t->nsets++] = vals;
	} else if (values_cap(p->nvals + 1) > values_cap(p->nvals)) {
		vals = realloc(t->sets[p->v], (size_t)values_cap(p->nvals + 1) * sizeof *vals);
		if (vals == NULL)
			return -1;
		t->sets[p->v] = vals;
	}
	vals = t->sets[p->v];
	memmove(vals + pos + 1, vals + pos, (p->nvals - pos) * sizeof *vals);
	vals[pos] = value;
	p->nvals++;
	return 0;
}

/* A node array of cap entries, 64-byte aligned (cap * 32 is a multiple of 64). */
static struct node *alloc_nodes(size_t cap)
{
	return aligned_alloc(64, cap * sizeof(struct node));
}

/*
 * The jump tables are 512 KiB.  They are mapped, not calloc'd: fresh pages
 * are zero and stay unbacked until touched, and munmap gives them back at
 * once.  From the heap, glibc would zero (touch) all of them and keep them
 * after free, so every reload would cost 512 KiB.  They hold indices only,
 * no pointers, so leak checkers lose nothing by not scanning them.
 */
#define JUMP_BYTES (2 * JUMP_SIZE * sizeof(uint32_t))

static uint32_t (*map_jump(void))[JUMP_SIZE]
{
	void *p = mmap(NULL, JUMP_BYTES, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

struct nettable *nettable_new(void)
{
	struct nettable *t = calloc(1, sizeof *t);

	if (t == NULL)
		return NULL;
	t->jump = map_jump();
	t->node_cap = t->prefix_cap = 16;
	t->nodes = alloc_nodes(t->node_cap);
	t->prefixes = malloc(t->prefix_cap * sizeof *t->prefixes);
	if (t->jump == NULL || t->nodes == NULL || t->prefixes == NULL) {
		if (t->jump != NULL)
			munmap(t->jump, JUMP_BYTES);
		free(t->nodes);
		free(t->prefixes);
		free(t);
		return NULL;
	}
	memset(&t->nodes[0], 0, sizeof t->nodes[0]); /* the root, not stored */
	t->nnodes = 1;
	memset(&t->prefixes[0], 0, sizeof t->prefixes[0]); /* "none" */
	t->nprefixes = 1;
	return t;
}

void nettable_free(struct nettable *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->nsets; i++)
		free(t->sets[i]);
	free(t->sets);
	free(t->prefixes);
	free(t->nodes);
	munmap(t->jump, JUMP_BYTES);
	free(t);
}

/* Grows by half, to keep the slack of a large table moderate. */
static size_t grown(size_t cap)
{
	return (cap + cap / 2 + 1) & ~(size_t)1; /* even, see alloc_nodes */
}

/* Room for two more nodes and one more prefix; pointers go stale. */
static int reserve(struct nettable *t)
{
	if (t->nnodes + 2 > t->node_cap) {
		size_t cap = grown(t->node_cap);
		struct node *nodes;

		if (cap > UINT32_MAX)
			return -1; /* indices are 32-bit */
		/* No aligned realloc in C11: allocate and copy. */
		nodes = alloc_nodes(cap);
		if (nodes == NULL)
			return -1;
		memcpy(nodes, t->nodes, t->nnodes * sizeof *nodes);
		free(t->nodes);
		t->nodes = nodes;
		t->node_cap = cap;
	}
	if (t->nprefixes + 1 > t->prefix_cap) {
		size_t cap = grown(t->prefix_cap);
		struct prefix *prefixes;

		if (cap > UINT32_MAX)
			return -1;
		prefixes = realloc(t->prefixes, cap * sizeof *prefixes);
		if (prefixes == NULL)
			return -1;
		t->prefixes = prefixes;
		t->prefix_cap = cap;
	}
	return 0;
}

/*
 * Appends a branch node below node `parent` (room must be reserved) and
 * returns its index.
 */
static uint32_t new_node(struct nettable *t, const key128 key, unsigned len,
			 uint32_t parent)
{
	struct node *n = &t->nodes[t->nnodes];

	memset(n, 0, sizeof *n);
	n->key[0] = key[0];
	n->key[1] = key[1];
	key_mask(n->key, len);
	n->len = (unsigned char)len;
	n->prefix = t->nodes[parent].prefix;
	return (uint32_t)t->nnodes++;
}

/* Finds or creates the node for (key, len); room must be reserved. */
static uint32_t find_or_insert(struct nettable *t, const key128 key, unsigned len)
{
	uint32_t cur = 0;

	for (;;) {
		/* Invariant: nodes[cur] is a prefix of key and its len <= len. */
		const struct node *n = &t->nodes[cur];
		unsigned b, common;
		uint32_t c, mid, leaf;

		if (n->len == len)
			return cur;
		b = key_bit(key, n->len);
		c = n->child[b];
		if (c == 0) {
			leaf = new_node(t, key, len, cur);
			t->nodes[cur].child[b] = leaf;
			return leaf;
		}
		common = key_common(key, t->nodes[c].key);
		if (common > len)
			common = len;
		if (common >= t->nodes[c].len) {
			cur = c; /* the child is a prefix of key: go down */
			continue;
		}
		/*
		 * key and the child part ways at bit `common` (or key ends
		 * there): put a node of that length between n and the child.
		 */
		mid = new_node(t, key, common, cur);
		t->nodes[mid].child[key_bit(t->nodes[c].key, common)] = c;
		if (common < len) {
			leaf = new_node(t, key, len, mid);
			t->nodes[mid].child[key_bit(key, common)] = leaf;
		} else {
			leaf = mid;
		}
		t->nodes[cur].child[b] = mid;
		return leaf;
	}
}

/*
 * Below stored prefix `owner`, which now holds value v.  If `adopt` (owner
 * is new), branch nodes down to the first stored prefixes now have owner
 * as their deepest stored prefix, and those stored prefixes have it as
 * `up`.  Lowers chain_min where v is smaller, and stops where it is
 * already <= v, since everything deeper is too.  Recursion depth is at
 * most 128.
 */
static void push_down(struct nettable *t, uint32_t i, uint32_t owner, unsigned v,
		      bool adopt)
{
	struct node *n;

	if (i == 0)
		return;
	n = &t->nodes[i];
	if (n->stored) {
		struct prefix *p = &t->prefixes[n->prefix];
		if (adopt)
			p->up = owner;
		if (p->chain_min <= v)
			return;
		p->chain_min = v;
		adopt = false;
	} else if (adopt) {
		n->prefix = owner;
	}
	push_down(t, n->child[0], owner, v, adopt);
	push_down(t, n->child[1], owner, v, adopt);
}

/* Points count jump entries from first at node i where they hold a shallower node. */
static void jump_fill(struct nettable *t, unsigned s, size_t first, size_t count, uint32_t i)
{
	unsigned len = t->nodes[i].len;

	for (size_t b = first; b < first + count; b++)
		if (t->nodes[t->jump[s][b]].len < len)
			t->jump[s][b] = i;
}

/* Points the jump entries of every block under new node i at it, if deeper. */
static void jump_note(struct nettable *t, uint32_t i)
{
	const struct node *n = &t->nodes[i];

	for (unsigned s = 0; s < 2; s++) {
		unsigned cut = space_len[s] + JUMP_BITS;
		size_t first, count;

		if (n->len > cut)
			continue;
		if (n->len <= space_len[s]) {
			/* above the space: a prefix of every block, or of none */
			if (!key_has_prefix(space_key[s], n->key, n->len))
				continue;
			first = 0;
			count = JUMP_SIZE;
		} else {
			if (!key_has_prefix(n->key, space_key[s], space_len[s]))
				continue;
			first = block_of(n->key, s);
			count = (size_t)1 << (cut - n->len);
		}
		jump_fill(t, s, first, count, i);
	}
}

int nettable_add(struct nettable *t, const struct netprefix *p, unsigned value)
{
	size_t old_nnodes;
	key128 key;
	uint32_t i, r;
	struct node *n;
	struct prefix *pr;

	if (t == NULL || p == NULL || p->len > 128)
		return -1;
	key_load(&p->addr, key);
	key_mask(key, p->len);

	/* With room reserved first, only adding to a value array can fail. */
	if (reserve(t) != 0)
		return -1;
	old_nnodes = t->nnodes;
	i = find_or_insert(t, key, p->len);
	for (size_t j = old_nnodes; j < t->nnodes; j++)
		jump_note(t, (uint32_t)j);
	n = &t->nodes[i];

	if (n->stored) {
		pr = &t->prefixes[n->prefix];
		if (prefix_add_value(t, pr, value) != 0)
			return -1; /* nothing has changed */
		if (value < pr->chain_min) {
			pr->chain_min = value;
			push_down(t, n->child[0], n->prefix, value, false);
			push_down(t, n->child[1], n->prefix, value, false);
		}
		return 0;
	}

	/*
	 * A new stored prefix, on a new node or on a former branch point;
	 * the deepest stored prefix above it is what the node knew so far.
	 */
	r = (uint32_t)t->nprefixes++;
	pr = &t->prefixes[r];
	memset(pr, 0, sizeof *pr);
	pr->up = n->prefix;
	pr->nvals = 1;
	pr->v = value;
	pr->chain_min = value;
	if (pr->up != 0 && t->prefixes[pr->up].chain_min < value)
		pr->chain_min = t->prefixes[pr->up].chain_min;
	n->prefix = r;
	n->stored = 1;
	push_down(t, n->child[0], r, value, true);
	push_down(t, n->child[1], r, value, true);
	return 0;
}

bool nettable_first_from(const struct nettable *t, const struct netaddr *a,
			 unsigned from, unsigned *found)
{
	key128 key;
	unsigned s;
	uint32_t cur;
	bool any = false;
	unsigned best = 0;

	if (t == NULL || a == NULL)
		return false;
	key_load(a, key);
	s = key_is_v4(key) ? 1 : 0;

	/* Down from the jump start to the last node containing a. */
	cur = t->jump[s][block_of(key, s)];
	for (;;) {
		const struct node *n = &t->nodes[cur];
		uint32_t c;

		if (n->len == 128)
			break;
		c = n->child[key_bit(key, n->len)];
		if (c == 0)
			break;
		n = &t->nodes[c];
		if (!key_has_prefix(key, n->key, n->len))
			break; /* below a node not containing a, nothing does */
		cur = c;
	}

	/*
	 * Then up from its deepest stored prefix: every stored prefix that
	 * contains a is on that chain.
	 */
	for (uint32_t i = t->nodes[cur].prefix; i != 0; i = t->prefixes[i].up) {
		const struct prefix *p = &t->prefixes[i];
		const unsigned *vals;
		unsigned k;

		if (p->chain_min >= from) {
			/* Nothing here or above is below from: chain_min wins. */
			if (!any || p->chain_min < best)
				best = p->chain_min;
			any = true;
			break;
		}
		vals = prefix_values(t, p);
		k = lower_bound(vals, p->nvals, from);
		if (k < p->nvals && (!any || vals[k] < best)) {
			best = vals[k];
			any = true;
			if (best == from)
				break; /* nothing can beat it */
		}
	}
	if (any && found != NULL)
		*found = best;
	return any;
}

size_t nettable_size(const struct nettable *t)
{
	return t ? t->nprefixes - 1 : 0;
}
