/* config.c — owns the configuration file: reads the YAML with libyaml's document API, checks it
 * against a small schema (one table of keys per section, one parser per key), collects every error
 * as "FILE:LINE:COL: message" (sorted by position), and builds the immutable snapshot struct
 * rw_config with one compiled router per frontend. Also owns the snapshot's reference count and
 * its freeing. Running out of memory while loading aborts the process. */
#include "config.h"

#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "http1.h"
#include "router.h"
#include "stage.h"

#define MAX_DURATION_MS (24u * 3600u * 1000u)

/* ---------------------------------------------------------------------------------------------
 * Memory
 */

static _Noreturn void out_of_memory(void)
{
	fputs("ringway: out of memory while loading the configuration\n", stderr);
	abort();
}

static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size);
	if (!p)
		out_of_memory();
	return p;
}

static char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		out_of_memory();
	return p;
}

/* ---------------------------------------------------------------------------------------------
 * Errors: gathered with their position, sorted by it at the end.
 */

struct pending_error {
	uint32_t line, col; /* 1-based */
	uint32_t seq;       /* order of discovery, to keep the sort stable */
	char *text;         /* the complete line */
};

struct loader {
	const char *file;
	yaml_document_t doc;
	struct rw_config *cfg;
	struct rw_frontend *frontend; /* the frontend being read */
	struct pending_error *errors;
	uint32_t nerrors, errors_cap;
};

static void add_error(struct loader *ld, uint32_t line, uint32_t col, char *text)
{
	if (ld->nerrors == ld->errors_cap) {
		ld->errors_cap = ld->errors_cap ? ld->errors_cap * 2 : 8;
		ld->errors = realloc(ld->errors, ld->errors_cap * sizeof ld->errors[0]);
		if (!ld->errors)
			out_of_memory();
	}
	ld->errors[ld->nerrors] = (struct pending_error){ line, col, ld->nerrors, text };
	ld->nerrors++;
}

__attribute__((format(printf, 4, 0))) static void
vreport_at(struct loader *ld, uint32_t line, uint32_t col, const char *fmt, va_list ap)
{
	char *msg, *text;
	if (vasprintf(&msg, fmt, ap) < 0)
		out_of_memory();
	if (asprintf(&text, "%s:%u:%u: %s", ld->file, line, col, msg) < 0)
		out_of_memory();
	free(msg);
	add_error(ld, line, col, text);
}

__attribute__((format(printf, 4, 5))) static void
report_at(struct loader *ld, uint32_t line, uint32_t col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport_at(ld, line, col, fmt, ap);
	va_end(ap);
}

/* Reports an error at the start of a node (libyaml marks are 0-based, error lines 1-based). */
__attribute__((format(printf, 3, 4))) static void
report(struct loader *ld, const yaml_node_t *at, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport_at(ld, (uint32_t)at->start_mark.line + 1, (uint32_t)at->start_mark.column + 1, fmt, ap);
	va_end(ap);
}

static int error_cmp(const void *a, const void *b)
{
	const struct pending_error *x = a, *y = b;
	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	if (x->col != y->col)
		return x->col < y->col ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* Moves the collected errors, sorted by position, into errs. */
static void hand_over_errors(struct loader *ld, struct config_errors *errs)
{
	if (ld->nerrors)
		qsort(ld->errors, ld->nerrors, sizeof ld->errors[0], error_cmp);
	errs->lines = ld->nerrors ? xcalloc(ld->nerrors, sizeof errs->lines[0]) : NULL;
	errs->count = ld->nerrors;
	for (uint32_t i = 0; i < ld->nerrors; i++)
		errs->lines[i] = ld->errors[i].text;
	free(ld->errors);
	ld->errors = NULL;
	ld->nerrors = ld->errors_cap = 0;
}

void config_errors_free(struct config_errors *errs)
{
	if (!errs)
		return;
	for (uint32_t i = 0; i < errs->count; i++)
		free(errs->lines[i]);
	free(errs->lines);
	errs->lines = NULL;
	errs->count = 0;
}

/* ---------------------------------------------------------------------------------------------
 * Nodes
 */

static yaml_node_t *node(struct loader *ld, int index)
{
	return yaml_document_get_node(&ld->doc, index);
}

static const char *text(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

/* A plain empty value (`key:`), `~` or `null`. */
static bool is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *s = text(n);
	return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	       !strcmp(s, "NULL");
}

static const char *kind_name(yaml_node_type_t kind)
{
	switch (kind) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a sequence";
	default:
		return "a scalar";
	}
}

/* "a mapping", "a sequence", "an empty value" or the scalar quoted. */
static const char *describe(const yaml_node_t *n, char *buf, size_t size)
{
	if (is_null(n))
		return "an empty value";
	if (n->type != YAML_SCALAR_NODE)
		return kind_name(n->type);
	snprintf(buf, size, "'%.60s'", text(n));
	return buf;
}

/* True if n is of that kind (a null is no scalar); otherwise reports "WHAT: expected ..., got ...". */
static bool expect_kind(struct loader *ld, const yaml_node_t *n, yaml_node_type_t kind,
			const char *what)
{
	if (n->type == kind && !(kind == YAML_SCALAR_NODE && is_null(n)))
		return true;
	char buf[80];
	report(ld, n, "%s: expected %s, got %s", what, kind_name(kind), describe(n, buf, sizeof buf));
	return false;
}

/* The scalar text of n, or NULL after reporting that n is not a scalar. */
static const char *expect_scalar(struct loader *ld, const yaml_node_t *n, const char *what)
{
	return expect_kind(ld, n, YAML_SCALAR_NODE, what) ? text(n) : NULL;
}

static yaml_node_pair_t *find_pair(struct loader *ld, const yaml_node_t *map, const char *key)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		const yaml_node_t *k = node(ld, p->key);
		if (k->type == YAML_SCALAR_NODE && !strcmp(text(k), key))
			return p;
	}
	return NULL;
}

static uint32_t pair_count(const yaml_node_t *map)
{
	return (uint32_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
}

static uint32_t item_count(const yaml_node_t *seq)
{
	return (uint32_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

/* Reports keys that are not scalars and keys that appear twice. */
static void check_keys(struct loader *ld, const yaml_node_t *map, const char *section)
{
	char buf[80];
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		const yaml_node_t *key = node(ld, p->key);
		if (key->type != YAML_SCALAR_NODE) {
			report(ld, key, "%s: a key must be a scalar, got %s", section,
			       describe(key, buf, sizeof buf));
			continue;
		}
		const yaml_node_pair_t *first = find_pair(ld, map, text(key));
		if (first != p) {
			const yaml_node_t *fk = node(ld, first->key);
			report(ld, key, "%s: duplicate key '%s' (first at %u:%u)", section, text(key),
			       (unsigned)fk->start_mark.line + 1, (unsigned)fk->start_mark.column + 1);
		}
	}
}

/* ---------------------------------------------------------------------------------------------
 * The schema walker: a section is a table of rules, one per key.
 */

struct rule;
typedef void parse_fn(struct loader *ld, yaml_node_t *value, void *obj, const struct rule *rule);

struct rule {
	const char *key;
	parse_fn *parse;
	size_t offset;            /* of the field that parse fills, inside obj */
	bool required;
	uint64_t min, max;        /* integers and sizes */
	const char *const *words; /* enumerations: NULL-terminated, index = stored value */
};

static void *field(void *obj, const struct rule *rule)
{
	return (char *)obj + rule->offset;
}

static const struct rule *find_rule(const struct rule *rules, const char *key)
{
	for (const struct rule *r = rules; r->key; r++)
		if (!strcmp(r->key, key))
			return r;
	return NULL;
}

/* Appends ", word" (or "word" first) to buf; truncates silently. */
static void append_word(char *buf, size_t size, const char *word)
{
	size_t used = strlen(buf);
	if (used < size)
		snprintf(buf + used, size - used, "%s%s", used ? ", " : "", word);
}

static void list_keys(const struct rule *rules, char *buf, size_t size)
{
	buf[0] = 0;
	for (const struct rule *r = rules; r->key; r++)
		append_word(buf, size, r->key);
}

static void list_words(const char *const *words, char *buf, size_t size)
{
	buf[0] = 0;
	for (const char *const *w = words; *w; w++)
		append_word(buf, size, *w);
}

/* Checks map against rules, then runs each rule's parser on its value in the order of the rules
 * (so a rule may rely on fields that earlier rules filled). Unknown, repeated and missing
 * required keys are reported; for a repeated key only the first value is read. */
static void walk_mapping(struct loader *ld, yaml_node_t *map, const char *section,
			 const struct rule *rules, void *obj)
{
	check_keys(ld, map, section);
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		const yaml_node_t *key = node(ld, p->key);
		if (key->type != YAML_SCALAR_NODE || find_pair(ld, map, text(key)) != p ||
		    find_rule(rules, text(key)))
			continue;
		char valid[512];
		list_keys(rules, valid, sizeof valid);
		report(ld, key, "%s: unknown key '%s' (valid keys: %s)", section, text(key), valid);
	}
	for (const struct rule *r = rules; r->key; r++) {
		yaml_node_pair_t *p = find_pair(ld, map, r->key);
		if (p)
			r->parse(ld, node(ld, p->value), obj, r);
		else if (r->required)
			report(ld, map, "%s: missing required key '%s'", section, r->key);
	}
}

/* "frontend 'public'" when the mapping has a usable name, else "frontend #2". */
static void section_label(struct loader *ld, const yaml_node_t *map, const char *kind,
			  uint32_t index, char *buf, size_t size)
{
	const yaml_node_pair_t *p = find_pair(ld, map, "name");
	const yaml_node_t *name = p ? node(ld, p->value) : NULL;
	if (name && name->type == YAML_SCALAR_NODE && !is_null(name))
		snprintf(buf, size, "%s '%.60s'", kind, text(name));
	else
		snprintf(buf, size, "%s #%u", kind, index + 1);
}

/* ---------------------------------------------------------------------------------------------
 * Scalars: integers, sizes, durations, addresses, names, paths, hosts
 */

/* Decimal digits only; saturates at UINT64_MAX. Advances *s past them. */
static bool parse_digits(const char **s, uint64_t *out)
{
	const char *p = *s;
	uint64_t n = 0;
	for (; *p >= '0' && *p <= '9'; p++)
		n = n > (UINT64_MAX - 9) / 10 ? UINT64_MAX : n * 10 + (uint64_t)(*p - '0');
	if (p == *s)
		return false;
	*s = p;
	*out = n;
	return true;
}

static bool parse_whole_number(const char *s, uint64_t *out)
{
	return parse_digits(&s, out) && !*s;
}

/* "16384", "16KiB", "10MiB", "1GiB"; saturates at UINT64_MAX. */
static bool parse_size(const char *s, uint64_t *out)
{
	static const struct { const char *suffix; unsigned shift; } units[] = {
		{ "", 0 }, { "KiB", 10 }, { "MiB", 20 }, { "GiB", 30 },
	};
	uint64_t n;
	if (!parse_digits(&s, &n))
		return false;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(s, units[i].suffix))
			continue;
		*out = n > (UINT64_MAX >> units[i].shift) ? UINT64_MAX : n << units[i].shift;
		return true;
	}
	return false;
}

bool config_parse_duration(const char *s, uint32_t *ms)
{
	static const struct { const char *unit; uint32_t ms; } units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60 * 1000 }, { "h", 3600 * 1000 },
	};
	uint64_t n;
	if (!s || !parse_digits(&s, &n) || n == 0 || n > MAX_DURATION_MS)
		return false;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(s, units[i].unit))
			continue;
		if (n * units[i].ms > MAX_DURATION_MS)
			return false;
		*ms = (uint32_t)(n * units[i].ms);
		return true;
	}
	return false;
}

bool config_parse_sockaddr(const char *s, struct rw_sockaddr *out)
{
	if (!s)
		return false;
	bool v6 = s[0] == '[';
	const char *host_start, *host_end, *port_text;
	if (v6) {
		host_start = s + 1;
		host_end = strchr(host_start, ']');
		if (!host_end || host_end[1] != ':')
			return false;
		port_text = host_end + 2;
	} else {
		host_start = s;
		host_end = strrchr(s, ':');
		if (!host_end)
			return false;
		port_text = host_end + 1;
	}
	char host[INET6_ADDRSTRLEN];
	size_t host_len = (size_t)(host_end - host_start);
	uint64_t port;
	if (host_len == 0 || host_len >= sizeof host || strlen(port_text) > 5 ||
	    !parse_whole_number(port_text, &port) || port < 1 || port > 65535)
		return false;
	memcpy(host, host_start, host_len);
	host[host_len] = 0;

	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof ss);
	socklen_t len;
	if (v6) {
		struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
		if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1)
			return false;
		a->sin6_family = AF_INET6;
		a->sin6_port = htons((uint16_t)port);
		len = sizeof *a;
	} else {
		struct sockaddr_in *a = (struct sockaddr_in *)&ss;
		if (inet_pton(AF_INET, host, &a->sin_addr) != 1)
			return false;
		a->sin_family = AF_INET;
		a->sin_port = htons((uint16_t)port);
		len = sizeof *a;
	}
	char *copy = strdup(s);
	if (!copy)
		return false;
	out->text = copy;
	out->addr = ss;
	out->addrlen = len;
	return true;
}

/* Whether the first len bits of addr equal those of net. */
static bool prefix_holds(const uint8_t net[16], unsigned len, const uint8_t addr[16])
{
	for (unsigned bit = 0; bit < len; bit++)
		if ((net[bit / 8] ^ addr[bit / 8]) & (0x80 >> (bit % 8)))
			return false;
	return true;
}

bool config_parse_prefix(const char *s, uint8_t addr[16], uint8_t *prefixlen, const char **why)
{
	static _Thread_local char reason[32]; /* "host bits set past /N" */
	const char *slash = s ? strchr(s, '/') : NULL;
	size_t host_len = !s ? 0 : slash ? (size_t)(slash - s) : strlen(s);
	char host[INET6_ADDRSTRLEN];
	uint8_t net[16] = { [10] = 0xff, [11] = 0xff }; /* ::ffff:0.0.0.0, for IPv4 */
	*why = "not an IPv4 or IPv6 address";
	if (host_len == 0 || host_len >= sizeof host)
		return false;
	memcpy(host, s, host_len);
	host[host_len] = 0;
	bool v6 = strchr(host, ':') != NULL;
	if (inet_pton(v6 ? AF_INET6 : AF_INET, host, v6 ? net : net + 12) != 1)
		return false;

	uint64_t bits = v6 ? 128 : 32, len = bits;
	if (slash && !parse_whole_number(slash + 1, &len)) {
		*why = "prefix length is not a number";
		return false;
	}
	if (len > bits) {
		*why = v6 ? "prefix length out of range 0..128" : "prefix length out of range 0..32";
		return false;
	}
	unsigned mapped_len = (unsigned)(len + 128 - bits);
	for (unsigned bit = mapped_len; bit < 128; bit++) {
		if (net[bit / 8] & (0x80 >> (bit % 8))) {
			snprintf(reason, sizeof reason, "host bits set past /%u", (unsigned)len);
			*why = reason;
			return false;
		}
	}
	memcpy(addr, net, sizeof net);
	*prefixlen = (uint8_t)mapped_len;
	return true;
}

bool config_parse_cidr(const char *s, uint8_t addr[16], uint8_t *prefixlen, const char **why)
{
	uint8_t net[16], len;
	if (!config_parse_prefix(s, net, &len, why))
		return false;
	/* IPv4 sources are matched as ::ffff:a.b.c.d: an IPv6 prefix shorter than /96 that holds
	 * that range (::/0 does) would cover every IPv4 source too. */
	static const uint8_t mapped_range[16] = { [10] = 0xff, [11] = 0xff };
	if (len < 96 && prefix_holds(net, len, mapped_range)) {
		*why = "an IPv6 prefix this short also covers every IPv4 source (matched as "
		       "::ffff:0:0/96): name the IPv6 ranges meant, e.g. 2000::/3";
		return false;
	}
	memcpy(addr, net, sizeof net);
	*prefixlen = len;
	return true;
}

bool config_ipv6_limit_too_long(const uint8_t addr[16], uint8_t prefixlen,
				uint32_t ipv6_source_prefix)
{
	static const uint8_t mapped_range[16] = { [10] = 0xff, [11] = 0xff };
	/* as the program: below 32 (0 in a map never written) or 128, per address */
	return ipv6_source_prefix >= 32 && ipv6_source_prefix < 128 &&
	       prefixlen > ipv6_source_prefix &&
	       !prefix_holds(mapped_range, 96, addr);
}

#define NAME_CHARS "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

/* Names of upstreams, frontends and routes: [A-Za-z0-9_.-]+ */
static bool valid_name(const char *s)
{
	return *s && s[strspn(s, NAME_CHARS "_.-")] == 0;
}

static const char *read_name(struct loader *ld, const yaml_node_t *v, const char *what)
{
	const char *s = expect_scalar(ld, v, what);
	if (s && !valid_name(s)) {
		report(ld, v, "%s: invalid name '%s' (use letters, digits, '_', '.' and '-')", what, s);
		return NULL;
	}
	return s;
}

/* A DNS name: dot-separated labels of letters, digits and '-' (not at either end of a label). */
static bool valid_dns_name(const char *s)
{
	size_t total = strlen(s);
	if (total == 0 || total > 253)
		return false;
	for (;;) {
		size_t label = strspn(s, NAME_CHARS "-");
		if (label == 0 || label > 63 || s[0] == '-' || s[label - 1] == '-')
			return false;
		s += label;
		if (*s == 0)
			return true;
		if (*s++ != '.')
			return false;
	}
}

/* "api.example.com" or "*.example.com"; no port. */
static bool valid_host_pattern(const char *s)
{
	if (s[0] == '*') {
		if (s[1] != '.')
			return false;
		s += 2;
	}
	return valid_dns_name(s);
}

/* Reports why a route path is unusable, or returns true. */
static bool check_path(struct loader *ld, const yaml_node_t *v, const char *what, const char *s)
{
	if (s[0] != '/') {
		report(ld, v, "%s: '%s' must start with '/'", what, s);
		return false;
	}
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c <= ' ' || *c == 0x7f || *c == '?' || *c == '#') {
			report(ld, v, "%s: '%s' must not contain spaces, control characters, '?' or '#'",
			       what, s);
			return false;
		}
	}
	return true;
}

/* ---------------------------------------------------------------------------------------------
 * Generic key parsers (each fills the field at rule->offset)
 */

/* Reads a number within [rule->min, rule->max], written as parse accepts it (a whole number or a
 * size); expected names the form in the error line. */
static bool read_number(struct loader *ld, const yaml_node_t *v, const struct rule *rule,
			bool (*parse)(const char *, uint64_t *), const char *expected, uint64_t *out)
{
	const char *s = expect_scalar(ld, v, rule->key);
	if (!s)
		return false;
	bool negative = s[0] == '-'; /* well-formed, but below every range */
	uint64_t n;
	if (!parse(s + negative, &n)) {
		report(ld, v, "%s: expected %s, got '%s'", rule->key, expected, s);
		return false;
	}
	if ((negative && n) || n < rule->min || n > rule->max) {
		report(ld, v, "%s: %s is out of range %llu..%llu", rule->key, s,
		       (unsigned long long)rule->min, (unsigned long long)rule->max);
		return false;
	}
	*out = n;
	return true;
}

#define SIZE_EXPECTED "a size (a whole number of bytes, or with KiB, MiB or GiB)"

static void parse_u32(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	uint64_t n;
	if (read_number(ld, v, rule, parse_whole_number, "an integer", &n))
		*(uint32_t *)field(obj, rule) = (uint32_t)n;
}

static void parse_size32(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	uint64_t n;
	if (read_number(ld, v, rule, parse_size, SIZE_EXPECTED, &n))
		*(uint32_t *)field(obj, rule) = (uint32_t)n;
}

static void parse_size64(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	uint64_t n;
	if (read_number(ld, v, rule, parse_size, SIZE_EXPECTED, &n))
		*(uint64_t *)field(obj, rule) = n;
}

static void parse_duration(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	const char *s = expect_scalar(ld, v, rule->key);
	if (s && !config_parse_duration(s, (uint32_t *)field(obj, rule)))
		report(ld, v,
		       "%s: invalid duration '%s' (a whole number and a unit: ms, s, m or h; "
		       "above 0, at most 24h)",
		       rule->key, s);
}

/* Stores the index of the word in rule->words into a uint8_t field. */
static void parse_enum(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	const char *s = expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	for (uint8_t i = 0; rule->words[i]; i++) {
		if (!strcmp(s, rule->words[i])) {
			*(uint8_t *)field(obj, rule) = i;
			return;
		}
	}
	char accepted[256];
	list_words(rule->words, accepted, sizeof accepted);
	report(ld, v, "%s: invalid value '%s' (expected one of %s)", rule->key, s, accepted);
}

/* Only true and false: YAML 1.1's yes, no, on and off are refused, as readers disagree on them. */
static void parse_bool(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	const char *s = expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	if (!strcmp(s, "true") || !strcmp(s, "false"))
		*(bool *)field(obj, rule) = s[0] == 't';
	else
		report(ld, v, "%s: expected true or false, got '%s'", rule->key, s);
}

typedef void address_check_fn(struct loader *ld, const yaml_node_t *item,
			      const struct rw_sockaddr *addr);

/* Reads a non-empty sequence of addresses into *list; check (optional) vets each one. */
static void read_address_list(struct loader *ld, yaml_node_t *v, const char *what,
			      struct rw_sockaddr **list, uint32_t *count, address_check_fn *check)
{
	if (!expect_kind(ld, v, YAML_SEQUENCE_NODE, what))
		return;
	if (item_count(v) == 0) {
		report(ld, v, "%s: at least one address is required", what);
		return;
	}
	*list = xcalloc(item_count(v), sizeof **list);
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		const yaml_node_t *item = node(ld, *i);
		const char *s = expect_scalar(ld, item, what);
		if (!s)
			continue;
		struct rw_sockaddr addr;
		if (!config_parse_sockaddr(s, &addr)) {
			report(ld, item,
			       "%s: invalid address '%s' (expected a.b.c.d:port or [ipv6]:port, "
			       "numeric, port 1..65535)",
			       what, s);
			continue;
		}
		if (check)
			check(ld, item, &addr);
		(*list)[(*count)++] = addr;
	}
}

/* ---------------------------------------------------------------------------------------------
 * Top level and limits
 */

static void parse_workers(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	uint64_t n;
	if (v->type == YAML_SCALAR_NODE && !strcmp(text(v), "auto"))
		*(uint32_t *)field(obj, rule) = 0;
	else if (read_number(ld, v, rule, parse_whole_number, "'auto' or an integer", &n))
		*(uint32_t *)field(obj, rule) = (uint32_t)n;
}

static void parse_access_log(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_config *cfg = obj;
	const char *s = expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	if (!strcmp(s, "stderr")) {
		cfg->access_log = ACCESS_LOG_STDERR;
	} else if (!strcmp(s, "off")) {
		cfg->access_log = ACCESS_LOG_OFF;
	} else if (!*s) {
		report(ld, v, "%s: expected stderr, off or a file path", rule->key);
	} else {
		cfg->access_log = ACCESS_LOG_FILE;
		cfg->access_log_path = xstrdup(s);
	}
}

/* Runs after max_header_bytes (rule order), which bounds it. */
static void parse_max_uri_bytes(struct loader *ld, yaml_node_t *v, void *obj,
				const struct rule *rule)
{
	struct rw_limits *limits = obj;
	uint64_t n;
	if (!read_number(ld, v, rule, parse_size, SIZE_EXPECTED, &n))
		return;
	if (n > limits->max_header_bytes) {
		report(ld, v, "%s: %s is above max_header_bytes (%u)", rule->key, text(v),
		       limits->max_header_bytes);
		return;
	}
	limits->max_uri_bytes = (uint32_t)n;
}

static const struct rule limits_rules[] = {
	{ .key = "max_header_bytes", .parse = parse_size32, .min = 1024, .max = 1048576,
	  .offset = offsetof(struct rw_limits, max_header_bytes) },
	{ .key = "max_uri_bytes", .parse = parse_max_uri_bytes, .min = 64, .max = 1048576 },
	{ .key = "max_body_bytes", .parse = parse_size64, .min = 0, .max = 1ull << 40,
	  .offset = offsetof(struct rw_limits, max_body_bytes) },
	{ .key = "header_timeout", .parse = parse_duration,
	  .offset = offsetof(struct rw_limits, header_timeout_ms) },
	{ .key = "keepalive_timeout", .parse = parse_duration,
	  .offset = offsetof(struct rw_limits, keepalive_timeout_ms) },
	{ .key = "client_timeout", .parse = parse_duration,
	  .offset = offsetof(struct rw_limits, client_timeout_ms) },
	{ .key = "max_connections", .parse = parse_u32, .min = 1, .max = 1048576,
	  .offset = offsetof(struct rw_limits, max_connections) },
	{ 0 }
};

static void parse_limits(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_config *cfg = obj;
	if (expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		walk_mapping(ld, v, "limits", limits_rules, &cfg->limits);
}

/* ---------------------------------------------------------------------------------------------
 * Upstreams
 */

static const char *const balance_words[] = { "round_robin", "random", "least_conn", NULL };

static void parse_targets(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_upstream *up = obj;
	read_address_list(ld, v, rule->key, &up->targets, &up->ntargets, NULL);
}

static const struct rule upstream_rules[] = {
	{ .key = "targets", .parse = parse_targets, .required = true },
	{ .key = "balance", .parse = parse_enum, .words = balance_words,
	  .offset = offsetof(struct rw_upstream, balance) },
	{ .key = "keepalive", .parse = parse_u32, .min = 0, .max = 4096,
	  .offset = offsetof(struct rw_upstream, keepalive) },
	{ .key = "connect_timeout", .parse = parse_duration,
	  .offset = offsetof(struct rw_upstream, connect_timeout_ms) },
	{ .key = "response_timeout", .parse = parse_duration,
	  .offset = offsetof(struct rw_upstream, response_timeout_ms) },
	{ 0 }
};

/* upstreams: a mapping from name to upstream; a repeated name is a duplicate key. */
static void parse_upstreams(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_config *cfg = obj;
	if (!expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		return;
	if (pair_count(v) == 0) {
		report(ld, v, "%s: at least one upstream is required", rule->key);
		return;
	}
	check_keys(ld, v, rule->key);
	cfg->upstreams = xcalloc(pair_count(v), sizeof cfg->upstreams[0]);
	for (yaml_node_pair_t *p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top; p++) {
		const yaml_node_t *key = node(ld, p->key);
		if (key->type != YAML_SCALAR_NODE || find_pair(ld, v, text(key)) != p)
			continue; /* reported by check_keys */
		if (!valid_name(text(key)))
			report(ld, key, "%s: invalid name '%s' (use letters, digits, '_', '.' and '-')",
			       rule->key, text(key));
		struct rw_upstream *up = &cfg->upstreams[cfg->nupstreams];
		*up = (struct rw_upstream){
			.name = xstrdup(text(key)),
			.index = cfg->nupstreams,
			.balance = BALANCE_ROUND_ROBIN,
			.keepalive = 32,
			.connect_timeout_ms = 1000,
			.response_timeout_ms = 30 * 1000,
		};
		cfg->nupstreams++;
		yaml_node_t *body = node(ld, p->value);
		char label[96];
		snprintf(label, sizeof label, "upstream '%.60s'", up->name);
		if (expect_kind(ld, body, YAML_MAPPING_NODE, label))
			walk_mapping(ld, body, label, upstream_rules, up);
	}
}

/* ---------------------------------------------------------------------------------------------
 * Routes
 */

static void parse_route_name(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route *rt = obj;
	const char *name = read_name(ld, v, rule->key);
	if (!name)
		return;
	for (uint32_t i = 0; i < rt->index; i++) {
		if (ld->frontend->routes[i].name && !strcmp(ld->frontend->routes[i].name, name)) {
			report(ld, v, "duplicate route name '%s'", name);
			break;
		}
	}
	rt->name = xstrdup(name);
}

static void parse_host(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route *rt = obj;
	const char *s = expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	if (!valid_host_pattern(s)) {
		report(ld, v,
		       "%s: invalid host pattern '%s' (expected a name like api.example.com or "
		       "*.example.com, without port)",
		       rule->key, s);
		return;
	}
	rt->host = xstrdup(s);
}

/* path_prefix and path_exact */
static void parse_path(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route *rt = obj;
	const char *s = expect_scalar(ld, v, rule->key);
	if (!s || !check_path(ld, v, rule->key, s))
		return;
	free(rt->path); /* both keys given: reported by parse_match */
	rt->path = xstrdup(s);
	rt->path_len = (uint32_t)strlen(s);
	rt->path_exact = !strcmp(rule->key, "path_exact");
}

static void parse_methods(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route *rt = obj;
	if (!expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (item_count(v) == 0) {
		report(ld, v, "%s: empty list (leave 'methods' out to allow every method)", rule->key);
		return;
	}
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		const yaml_node_t *item = node(ld, *i);
		const char *s = expect_scalar(ld, item, rule->key);
		if (!s)
			continue;
		enum http_method m = http_method_lookup(s, strlen(s));
		if (m == HTTP_M_OTHER)
			report(ld, item,
			       "%s: unknown method '%s' (expected one of GET, HEAD, POST, PUT, DELETE, "
			       "PATCH, OPTIONS, TRACE)",
			       rule->key, s);
		else
			rt->methods |= HTTP_METHOD_BIT(m);
	}
}

static const struct rule match_rules[] = {
	{ .key = "host", .parse = parse_host },
	{ .key = "path_prefix", .parse = parse_path },
	{ .key = "path_exact", .parse = parse_path },
	{ .key = "methods", .parse = parse_methods },
	{ 0 }
};

static void parse_match(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	if (!expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		return;
	walk_mapping(ld, v, "match", match_rules, obj);
	if (!find_pair(ld, v, "path_prefix") == !find_pair(ld, v, "path_exact"))
		report(ld, v, "match: needs exactly one of path_prefix, path_exact");
}

static void parse_upstream_ref(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route *rt = obj;
	const char *s = expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	for (uint32_t i = 0; i < ld->cfg->nupstreams; i++) {
		if (!strcmp(ld->cfg->upstreams[i].name, s)) {
			rt->upstream = &ld->cfg->upstreams[i];
			return;
		}
	}
	report(ld, v, "unknown upstream '%s'", s);
}

/* Runs after match (rule order): strip_prefix must be a prefix of the route's path that ends
 * where a path segment ends. */
static void parse_strip_prefix(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_route *rt = obj;
	const char *s = expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	size_t len = strlen(s);
	if (s[0] != '/' || s[len - 1] == '/') {
		report(ld, v, "%s: '%s' must start with '/' and not end with '/'", rule->key, s);
		return;
	}
	if (rt->path) { /* without a path, match has been reported already */
		if (len > rt->path_len || memcmp(rt->path, s, len) != 0) {
			report(ld, v, "%s: '%s' is not a prefix of the route's path '%s'", rule->key, s,
			       rt->path);
			return;
		}
		if (len < rt->path_len && rt->path[len] != '/') {
			report(ld, v, "%s: '%s' does not end at a '/' of the route's path '%s'",
			       rule->key, s, rt->path);
			return;
		}
	}
	rt->strip_prefix = xstrdup(s);
	rt->strip_len = (uint32_t)len;
}

static const struct rule route_rules[] = {
	{ .key = "name", .parse = parse_route_name, .required = true },
	{ .key = "match", .parse = parse_match, .required = true },
	{ .key = "upstream", .parse = parse_upstream_ref, .required = true },
	{ .key = "strip_prefix", .parse = parse_strip_prefix },
	{ 0 }
};

static bool methods_overlap(uint32_t a, uint32_t b)
{
	return a == 0 || b == 0 || (a & b) != 0;
}

static bool same_host(const char *a, const char *b)
{
	return (!a && !b) || (a && b && !strcasecmp(a, b));
}

/* A route with the host, path and exactness of an earlier route and a method in common with it
 * is never chosen for that method: reported at its match key. Only routes without errors
 * (sound[i]) are compared, so that a bad host does not also read as a shadowed route. */
static void check_shadowing(struct loader *ld, const struct rw_frontend *f, const bool *sound,
			    const struct rw_route *rt, const yaml_node_t *map)
{
	for (uint32_t i = 0; i < rt->index; i++) {
		const struct rw_route *earlier = &f->routes[i];
		if (!sound[i] || earlier->path_exact != rt->path_exact ||
		    strcmp(earlier->path, rt->path) || !same_host(earlier->host, rt->host) ||
		    !methods_overlap(earlier->methods, rt->methods))
			continue;
		char label[96];
		section_label(ld, map, "route", rt->index, label, sizeof label);
		report(ld, node(ld, find_pair(ld, map, "match")->key),
		       "%s is shadowed by route '%s' (same host, path and methods)", label,
		       earlier->name ? earlier->name : "?");
		return;
	}
}

static void parse_routes(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_frontend *f = obj;
	if (!expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (item_count(v) == 0) {
		report(ld, v, "%s: at least one route is required", rule->key);
		return;
	}
	f->nroutes = item_count(v);
	f->routes = xcalloc(f->nroutes, sizeof f->routes[0]);
	bool *sound = xcalloc(f->nroutes, sizeof *sound); /* route read without errors */
	for (uint32_t i = 0; i < f->nroutes; i++) {
		yaml_node_t *map = node(ld, v->data.sequence.items.start[i]);
		struct rw_route *rt = &f->routes[i];
		rt->index = i;
		if (!expect_kind(ld, map, YAML_MAPPING_NODE, rule->key))
			continue;
		char label[96];
		section_label(ld, map, "route", i, label, sizeof label);
		uint32_t errors_before = ld->nerrors;
		walk_mapping(ld, map, label, route_rules, rt);
		sound[i] = ld->nerrors == errors_before;
		if (sound[i])
			check_shadowing(ld, f, sound, rt, map);
	}
	free(sound);
}

/* ---------------------------------------------------------------------------------------------
 * Frontends
 */

static void parse_frontend_name(struct loader *ld, yaml_node_t *v, void *obj,
				const struct rule *rule)
{
	struct rw_frontend *f = obj;
	const char *name = read_name(ld, v, rule->key);
	if (!name)
		return;
	for (const struct rw_frontend *other = ld->cfg->frontends; other < f; other++) {
		if (other->name && !strcmp(other->name, name)) {
			report(ld, v, "duplicate frontend name '%s'", name);
			break;
		}
	}
	f->name = xstrdup(name);
}

static bool same_address(const struct rw_sockaddr *a, const struct rw_sockaddr *b)
{
	return a->addrlen == b->addrlen && memcmp(&a->addr, &b->addr, a->addrlen) == 0;
}

/* An address is listened on by one frontend, once. */
static void check_listen_unique(struct loader *ld, const yaml_node_t *item,
				const struct rw_sockaddr *addr)
{
	for (const struct rw_frontend *f = ld->cfg->frontends; f <= ld->frontend; f++) {
		for (uint32_t i = 0; i < f->nlistens; i++) {
			if (!same_address(&f->listens[i], addr))
				continue;
			report(ld, item, "listen: address '%s' is already used by frontend '%s'",
			       addr->text, f->name ? f->name : "?");
			return;
		}
	}
}

static void parse_listen(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_frontend *f = obj;
	read_address_list(ld, v, rule->key, &f->listens, &f->nlistens, check_listen_unique);
}

static const struct rule frontend_rules[] = {
	{ .key = "name", .parse = parse_frontend_name, .required = true },
	{ .key = "listen", .parse = parse_listen, .required = true },
	{ .key = "routes", .parse = parse_routes, .required = true },
	{ 0 }
};

static void parse_frontends(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_config *cfg = obj;
	if (!expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	if (item_count(v) == 0) {
		report(ld, v, "%s: at least one frontend is required", rule->key);
		return;
	}
	cfg->nfrontends = item_count(v);
	cfg->frontends = xcalloc(cfg->nfrontends, sizeof cfg->frontends[0]);
	for (uint32_t i = 0; i < cfg->nfrontends; i++) {
		yaml_node_t *map = node(ld, v->data.sequence.items.start[i]);
		ld->frontend = &cfg->frontends[i];
		if (!expect_kind(ld, map, YAML_MAPPING_NODE, rule->key))
			continue;
		char label[96];
		section_label(ld, map, "frontend", i, label, sizeof label);
		walk_mapping(ld, map, label, frontend_rules, ld->frontend);
	}
	ld->frontend = NULL;
}

/* ---------------------------------------------------------------------------------------------
 * XDP limiter
 */

#define XDP_RATE_MAX 1000000u    /* the bucket's interval is whole nanoseconds: exact to 0.1% */
#define XDP_COUNT_MAX 100000000u /* bursts and the admission budget */
#define PIN_PATH_MAX 200u
#define ACTION_UNSET 0xff /* rw_xdp_policy.action until its action is known */

static const char *const xdp_mode_words[] = { "off", "auto", "native", "generic", NULL };
static const char *const xdp_limit_words[] = { "syn", "all", NULL };
static const char *const policy_action_words[] = { "limit", "allow", "deny", NULL };

/* Two seconds' worth of a rate: the burst when none is given. */
static uint32_t default_burst(uint32_t rate)
{
	return rate * 2;
}

/* As the kernel's dev_valid_name: 1..15 bytes, not "." or "..", no '/', ':' or whitespace (and
 * here no control characters either). */
static bool valid_interface_name(const char *s)
{
	size_t len = strlen(s);
	if (len == 0 || len >= IFNAMSIZ || !strcmp(s, ".") || !strcmp(s, ".."))
		return false;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c <= ' ' || *c == 0x7f || *c == '/' || *c == ':')
			return false;
	return true;
}

static void parse_interface(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_xdp *xdp = obj;
	const char *s = expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	if (!valid_interface_name(s)) {
		report(ld, v,
		       "%s: invalid interface name '%s' (1..15 characters, no '/', ':' or spaces, "
		       "not '.' or '..')",
		       rule->key, s);
		return;
	}
	xdp->interface = xstrdup(s);
}

/* 1..RW_XDP_MAX_PORTS distinct ports, each within rule->min..rule->max; a duplicate is reported
 * at its repetition. */
static void parse_ports(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_xdp *xdp = obj;
	if (!expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	uint32_t n = item_count(v);
	if (n == 0) {
		report(ld, v, "%s: empty list (leave 'ports' out to guard every port)", rule->key);
		return;
	}
	if (n > RW_XDP_MAX_PORTS) {
		report(ld, node(ld, v->data.sequence.items.start[RW_XDP_MAX_PORTS]),
		       "%s: more than %d ports", rule->key, RW_XDP_MAX_PORTS);
		n = RW_XDP_MAX_PORTS;
	}
	const yaml_node_t *items[RW_XDP_MAX_PORTS]; /* the item of each port in xdp->ports */
	for (uint32_t i = 0; i < n; i++) {
		const yaml_node_t *item = node(ld, v->data.sequence.items.start[i]);
		uint64_t port;
		if (!read_number(ld, item, rule, parse_whole_number, "an integer", &port))
			continue;
		uint32_t k = 0;
		while (k < xdp->nports && xdp->ports[k] != port)
			k++;
		if (k < xdp->nports) {
			report(ld, item, "%s: duplicate port %u (first at %u:%u)", rule->key,
			       (unsigned)port, (unsigned)items[k]->start_mark.line + 1,
			       (unsigned)items[k]->start_mark.column + 1);
			continue;
		}
		items[xdp->nports] = item;
		xdp->ports[xdp->nports++] = (uint16_t)port;
	}
}

/* An absolute directory below "/", without ".." (the maps are pinned inside it). */
static void parse_pin_path(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_xdp *xdp = obj;
	const char *s = expect_scalar(ld, v, rule->key);
	if (!s || !check_path(ld, v, rule->key, s))
		return;
	if (strlen(s) > PIN_PATH_MAX) {
		report(ld, v, "%s: longer than %u characters", rule->key, PIN_PATH_MAX);
		return;
	}
	bool below_root = false, dot_dot = false;
	for (const char *c = s + strspn(s, "/"); *c; c += strspn(c, "/")) {
		size_t len = strcspn(c, "/");
		dot_dot |= len == 2 && !strncmp(c, "..", 2);
		below_root |= !(len == 1 && c[0] == '.');
		c += len;
	}
	if (dot_dot) {
		report(ld, v, "%s: '%s' must not contain '..'", rule->key, s);
		return;
	}
	if (!below_root) {
		report(ld, v, "%s: '%s' must be a directory below '/'", rule->key, s);
		return;
	}
	free(xdp->pin_path);
	xdp->pin_path = xstrdup(s);
}

static void parse_cidr(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_xdp_policy *pol = obj;
	const char *s = expect_scalar(ld, v, rule->key);
	const char *why;
	if (!s)
		return;
	if (!config_parse_cidr(s, pol->addr, &pol->prefixlen, &why)) {
		report(ld, v, "%s: invalid CIDR '%s' (%s)", rule->key, s, why);
		return;
	}
	pol->cidr = xstrdup(s);
}

static const struct rule policy_rules[] = {
	{ .key = "cidr", .parse = parse_cidr, .required = true },
	{ .key = "action", .parse = parse_enum, .words = policy_action_words,
	  .offset = offsetof(struct rw_xdp_policy, action) },
	{ .key = "rate", .parse = parse_u32, .min = 1, .max = XDP_RATE_MAX,
	  .offset = offsetof(struct rw_xdp_policy, rate) },
	{ .key = "burst", .parse = parse_u32, .min = 1, .max = XDP_COUNT_MAX,
	  .offset = offsetof(struct rw_xdp_policy, burst) },
	{ 0 }
};

/* Reads one policy: without action it is limit when a rate is given; rate and burst belong to
 * limit only, which needs a rate; the burst defaults to twice the rate. */
static void read_policy(struct loader *ld, yaml_node_t *map, const char *label,
			struct rw_xdp_policy *pol)
{
	pol->action = ACTION_UNSET;
	walk_mapping(ld, map, label, policy_rules, pol);
	const yaml_node_pair_t *action = find_pair(ld, map, "action");
	const yaml_node_pair_t *rate = find_pair(ld, map, "rate");
	const yaml_node_pair_t *burst = find_pair(ld, map, "burst");
	if (!action && !rate) {
		report(ld, map, "%s: needs an action (allow, deny) or a rate (for action limit)",
		       label);
		return;
	}
	if (!action)
		pol->action = RW_POLICY_LIMIT;
	if (pol->action == ACTION_UNSET) /* an invalid action, reported */
		return;
	if (pol->action != RW_POLICY_LIMIT) {
		const char *word = policy_action_words[pol->action];
		if (rate)
			report(ld, node(ld, rate->key), "rate: only applies to action limit, not %s",
			       word);
		if (burst)
			report(ld, node(ld, burst->key), "burst: only applies to action limit, not %s",
			       word);
		return;
	}
	if (!rate)
		report(ld, map, "%s: action limit needs a rate", label);
	else if (!burst)
		pol->burst = default_burst(pol->rate);
}

/* The value node of a read policy's cidr. */
static const yaml_node_t *cidr_node(struct loader *ld, const yaml_node_t *seq, uint32_t index)
{
	const yaml_node_t *map = node(ld, seq->data.sequence.items.start[index]);
	return node(ld, find_pair(ld, map, "cidr")->value);
}

/* Two policies for the same prefix (after mapping: 198.51.100.0/24 is ::ffff:198.51.100.0/120)
 * are reported at the later one. */
static void check_policy_unique(struct loader *ld, const struct rw_xdp *xdp,
				const yaml_node_t *seq, uint32_t index)
{
	const struct rw_xdp_policy *pol = &xdp->policies[index];
	for (uint32_t i = 0; i < index; i++) {
		const struct rw_xdp_policy *earlier = &xdp->policies[i];
		if (!earlier->cidr || earlier->prefixlen != pol->prefixlen ||
		    memcmp(earlier->addr, pol->addr, sizeof pol->addr))
			continue;
		const yaml_node_t *first = cidr_node(ld, seq, i);
		report(ld, cidr_node(ld, seq, index),
		       "cidr: duplicate prefix '%s' (same as '%s' at %u:%u)", pol->cidr, earlier->cidr,
		       (unsigned)first->start_mark.line + 1, (unsigned)first->start_mark.column + 1);
		return;
	}
}

static void parse_policies(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_xdp *xdp = obj;
	if (!expect_kind(ld, v, YAML_SEQUENCE_NODE, rule->key))
		return;
	uint32_t n = item_count(v);
	if (n > RW_XDP_MAX_POLICIES) {
		report(ld, node(ld, v->data.sequence.items.start[RW_XDP_MAX_POLICIES]),
		       "%s: more than %d policies", rule->key, RW_XDP_MAX_POLICIES);
		n = RW_XDP_MAX_POLICIES;
	}
	xdp->npolicies = n;
	xdp->policies = xcalloc(n, sizeof xdp->policies[0]);
	for (uint32_t i = 0; i < n; i++) {
		yaml_node_t *map = node(ld, v->data.sequence.items.start[i]);
		if (!expect_kind(ld, map, YAML_MAPPING_NODE, rule->key))
			continue;
		char label[32];
		snprintf(label, sizeof label, "policy #%u", i + 1);
		const struct rw_xdp_policy *pol = &xdp->policies[i];
		read_policy(ld, map, label, &xdp->policies[i]);
		if (!pol->cidr)
			continue;
		check_policy_unique(ld, xdp, v, i);
		if (pol->action == RW_POLICY_LIMIT &&
		    config_ipv6_limit_too_long(pol->addr, pol->prefixlen, xdp->ipv6_source_prefix))
			report(ld, cidr_node(ld, v, i),
			       "cidr: a limit on '%s' is longer than ipv6_source_prefix /%u, whose "
			       "sources share one bucket: limit the /%u, or allow or deny the address",
			       pol->cidr, xdp->ipv6_source_prefix, xdp->ipv6_source_prefix);
	}
}

static const struct rule xdp_rules[] = {
	{ .key = "interface", .parse = parse_interface },
	{ .key = "mode", .parse = parse_enum, .words = xdp_mode_words,
	  .offset = offsetof(struct rw_xdp, mode) },
	{ .key = "limit", .parse = parse_enum, .words = xdp_limit_words,
	  .offset = offsetof(struct rw_xdp, limit) },
	{ .key = "ports", .parse = parse_ports, .min = 1, .max = 65535 },
	{ .key = "rate", .parse = parse_u32, .min = 1, .max = XDP_RATE_MAX,
	  .offset = offsetof(struct rw_xdp, rate) },
	{ .key = "burst", .parse = parse_u32, .min = 1, .max = XDP_COUNT_MAX,
	  .offset = offsetof(struct rw_xdp, burst) },
	{ .key = "required", .parse = parse_bool, .offset = offsetof(struct rw_xdp, required) },
	{ .key = "pin_path", .parse = parse_pin_path },
	{ .key = "max_sources", .parse = parse_u32, .min = 1024, .max = 16777216,
	  .offset = offsetof(struct rw_xdp, max_sources) },
	{ .key = "new_sources_per_second", .parse = parse_u32, .min = 1, .max = XDP_COUNT_MAX,
	  .offset = offsetof(struct rw_xdp, new_sources_per_second) },
	{ .key = "fallback_rate", .parse = parse_u32, .min = 1, .max = XDP_RATE_MAX,
	  .offset = offsetof(struct rw_xdp, fallback_rate) },
	{ .key = "fallback_burst", .parse = parse_u32, .min = 1, .max = XDP_COUNT_MAX,
	  .offset = offsetof(struct rw_xdp, fallback_burst) },
	{ .key = "ipv6_source_prefix", .parse = parse_u32, .min = 32, .max = 128,
	  .offset = offsetof(struct rw_xdp, ipv6_source_prefix) },
	{ .key = "policies", .parse = parse_policies },
	{ 0 }
};

/* Present, the section turns the limiter on (mode auto) unless it says mode: off; everything in
 * it is checked either way. */
static void parse_xdp(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct rw_xdp *xdp = &((struct rw_config *)obj)->xdp;
	if (!expect_kind(ld, v, YAML_MAPPING_NODE, rule->key))
		return;
	xdp->mode = XDP_MODE_AUTO;
	walk_mapping(ld, v, "xdp", xdp_rules, xdp);
	if (xdp->mode != XDP_MODE_OFF && !find_pair(ld, v, "interface"))
		report(ld, v, "xdp: missing required key 'interface' (or set mode: off)");
	if (!find_pair(ld, v, "burst"))
		xdp->burst = default_burst(xdp->rate);
	if (!find_pair(ld, v, "fallback_burst"))
		xdp->fallback_burst = default_burst(xdp->fallback_rate);
}

/* upstreams comes before frontends: routes look their upstream up by name. */
static const struct rule top_rules[] = {
	{ .key = "workers", .parse = parse_workers, .min = 1, .max = 256,
	  .offset = offsetof(struct rw_config, workers) },
	{ .key = "access_log", .parse = parse_access_log },
	{ .key = "drain_timeout", .parse = parse_duration,
	  .offset = offsetof(struct rw_config, drain_timeout_ms) },
	{ .key = "limits", .parse = parse_limits },
	{ .key = "upstreams", .parse = parse_upstreams, .required = true },
	{ .key = "frontends", .parse = parse_frontends, .required = true },
	{ .key = "xdp", .parse = parse_xdp },
	{ 0 }
};

/* ---------------------------------------------------------------------------------------------
 * Snapshot life
 */

static struct rw_config *new_config(const char *path)
{
	struct rw_config *cfg = xcalloc(1, sizeof *cfg);
	cfg->path = xstrdup(path);
	cfg->workers = 0;
	cfg->access_log = ACCESS_LOG_STDERR;
	cfg->drain_timeout_ms = 10 * 1000;
	cfg->limits = (struct rw_limits){
		.max_header_bytes = 16384,
		.max_uri_bytes = 8192,
		.max_body_bytes = 10485760,
		.header_timeout_ms = 10 * 1000,
		.keepalive_timeout_ms = 60 * 1000,
		.client_timeout_ms = 60 * 1000,
		.max_connections = 65536,
	};
	cfg->xdp = (struct rw_xdp){ /* mode off: parse_xdp turns it on */
		.limit = RW_LIMIT_SYN,
		.pin_path = xstrdup(RW_XDP_PIN_DIR),
		.rate = 200,
		.burst = 400,
		.max_sources = RW_XDP_DEFAULT_SOURCES,
		.new_sources_per_second = 1000,
		.ipv6_source_prefix = 128,
		.fallback_rate = 100,
		.fallback_burst = 200,
	};
	atomic_init(&cfg->refs, 1);
	return cfg;
}

static void free_addresses(struct rw_sockaddr *list, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		free(list[i].text);
	free(list);
}

/* Frees a snapshot, complete or abandoned half-way by a failed load. */
static void config_free(struct rw_config *cfg)
{
	for (uint32_t i = 0; i < cfg->nupstreams; i++) {
		free(cfg->upstreams[i].name);
		free_addresses(cfg->upstreams[i].targets, cfg->upstreams[i].ntargets);
	}
	free(cfg->upstreams);
	for (uint32_t i = 0; i < cfg->nfrontends; i++) {
		struct rw_frontend *f = &cfg->frontends[i];
		if (f->router)
			router_free(f->router);
		for (uint32_t j = 0; j < f->nroutes; j++) {
			free(f->routes[j].name);
			free(f->routes[j].host);
			free(f->routes[j].path);
			free(f->routes[j].strip_prefix);
			stages_free(&f->routes[j]);
		}
		free(f->routes);
		free_addresses(f->listens, f->nlistens);
		free(f->name);
	}
	free(cfg->frontends);
	for (uint32_t i = 0; i < cfg->xdp.npolicies; i++)
		free(cfg->xdp.policies[i].cidr);
	free(cfg->xdp.policies);
	free(cfg->xdp.interface);
	free(cfg->xdp.pin_path);
	free(cfg->access_log_path);
	free(cfg->path);
	free(cfg);
}

struct rw_config *config_ref(struct rw_config *cfg)
{
	if (cfg)
		atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
	return cfg;
}

void config_unref(struct rw_config *cfg)
{
	if (cfg && atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) == 1)
		config_free(cfg);
}

/* ---------------------------------------------------------------------------------------------
 * Loading
 */

/* Reports a libyaml parse failure at its problem position. */
static void report_yaml_error(struct loader *ld, const yaml_parser_t *parser, const char *input)
{
	if (parser->error == YAML_MEMORY_ERROR)
		out_of_memory();
	uint32_t line = (uint32_t)parser->problem_mark.line + 1;
	uint32_t col = (uint32_t)parser->problem_mark.column + 1;
	if (parser->error == YAML_READER_ERROR) { /* only a byte offset is known */
		line = col = 1;
		for (size_t i = 0; i < parser->problem_offset; i++, col++)
			if (input[i] == '\n')
				line++, col = 0;
	}
	const char *problem = parser->problem ? parser->problem : "malformed document";
	if (parser->context)
		report_at(ld, line, col, "YAML syntax error: %s (%s at %u:%u)", problem,
			  parser->context, (unsigned)parser->context_mark.line + 1,
			  (unsigned)parser->context_mark.column + 1);
	else
		report_at(ld, line, col, "YAML syntax error: %s", problem);
}

/* Parses the first YAML document into ld->doc; a second document is an error. Returns false
 * (error reported) when there is no document to check. */
static bool read_document(struct loader *ld, const char *yaml, size_t len)
{
	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser))
		out_of_memory();
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	if (!yaml_parser_load(&parser, &ld->doc)) { /* libyaml has freed the document */
		report_yaml_error(ld, &parser, yaml);
		yaml_parser_delete(&parser);
		return false;
	}
	yaml_document_t extra;
	if (!yaml_parser_load(&parser, &extra)) {
		report_yaml_error(ld, &parser, yaml);
	} else {
		const yaml_node_t *root = yaml_document_get_root_node(&extra);
		if (root)
			report(ld, root, "only one YAML document is allowed");
		yaml_document_delete(&extra);
	}
	yaml_parser_delete(&parser);
	return true;
}

struct rw_config *config_load_string(const char *name, const char *yaml, size_t len,
				     struct config_errors *errs)
{
	struct config_errors unwanted;
	if (!errs)
		errs = &unwanted;
	*errs = (struct config_errors){ 0 };
	struct loader ld = { .file = name, .cfg = new_config(name) };

	if (read_document(&ld, yaml ? yaml : "", yaml ? len : 0)) {
		yaml_node_t *root = yaml_document_get_root_node(&ld.doc);
		char buf[80];
		if (!root)
			report_at(&ld, 1, 1, "the configuration is empty");
		else if (root->type != YAML_MAPPING_NODE)
			report(&ld, root, "the top level must be a mapping, got %s",
			       describe(root, buf, sizeof buf));
		else
			walk_mapping(&ld, root, "top level", top_rules, ld.cfg);
		yaml_document_delete(&ld.doc);
	}
	if (ld.nerrors == 0) {
		for (uint32_t i = 0; i < ld.cfg->nfrontends; i++) {
			struct rw_frontend *f = &ld.cfg->frontends[i];
			f->router = router_build(f->routes, f->nroutes);
			if (!f->router)
				out_of_memory();
			for (uint32_t j = 0; j < f->nroutes; j++)
				if (stages_compile(&f->routes[j], ld.cfg))
					out_of_memory();
		}
	}
	hand_over_errors(&ld, errs);
	if (errs->count == 0)
		return ld.cfg;
	config_free(ld.cfg);
	if (errs == &unwanted)
		config_errors_free(&unwanted);
	return NULL;
}

struct rw_config *config_load_file(const char *path, struct config_errors *errs)
{
	char *buf = NULL;
	size_t len = 0, cap = 0, got;
	int err = 0;
	FILE *f = fopen(path, "rb");
	if (!f) {
		err = errno;
	} else {
		do {
			if (len == cap) {
				cap = cap ? cap * 2 : 65536;
				buf = realloc(buf, cap);
				if (!buf)
					out_of_memory();
			}
			got = fread(buf + len, 1, cap - len, f);
			len += got;
		} while (got > 0);
		if (ferror(f))
			err = errno ? errno : EIO;
		fclose(f);
	}
	if (err) {
		free(buf);
		if (errs) {
			*errs = (struct config_errors){ xcalloc(1, sizeof(char *)), 1 };
			if (asprintf(&errs->lines[0], "%s: cannot read: %s", path, strerror(err)) < 0)
				out_of_memory();
		}
		return NULL;
	}
	struct rw_config *cfg = config_load_string(path, buf ? buf : "", len, errs);
	free(buf);
	return cfg;
}
