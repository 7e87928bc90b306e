/* schema.c — owns the mechanics of reading the configuration, apart from what any section means:
 * the YAML document (libyaml's document API), error lines "FILE:LINE:COL: message" collected and
 * sorted by position, allocation that records out of memory instead of aborting, node helpers, the
 * rule-driven mapping walker and the typed value parsers. The sections themselves are in config.c
 * and in their modules (xdp_config.c). */
#include "schema.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------------------------
 * Memory
 */

_Thread_local unsigned schema_fail_allocation;

void schema_out_of_memory(struct loader *ld)
{
	ld->out_of_memory = true;
}

void *schema_alloc(struct loader *ld, size_t n, size_t size)
{
	bool injected = schema_fail_allocation && --schema_fail_allocation == 0;
	void *p = injected ? NULL : calloc(n ? n : 1, size);
	if (!p)
		schema_out_of_memory(ld);
	return p;
}

char *schema_strdup(struct loader *ld, const char *s)
{
	size_t size = strlen(s) + 1;
	char *p = schema_alloc(ld, size, 1);
	return p ? memcpy(p, s, size) : NULL;
}

/* ---------------------------------------------------------------------------------------------
 * Errors: gathered with their position, sorted by it at the end.
 */

struct pending_error {
	uint32_t line, col; /* 1-based */
	uint32_t seq;       /* order of discovery, to keep the sort stable */
	char *text;         /* the complete line */
};

static void add_error(struct loader *ld, uint32_t line, uint32_t col, char *text)
{
	if (ld->nerrors == ld->errors_cap) {
		uint32_t cap = ld->errors_cap ? ld->errors_cap * 2 : 8;
		struct pending_error *grown = schema_alloc(ld, cap, sizeof grown[0]);
		if (!grown) {
			free(text);
			return;
		}
		if (ld->nerrors)
			memcpy(grown, ld->errors, ld->nerrors * sizeof grown[0]);
		free(ld->errors);
		ld->errors = grown;
		ld->errors_cap = cap;
	}
	ld->errors[ld->nerrors] = (struct pending_error){ line, col, ld->nerrors, text };
	ld->nerrors++;
}

__attribute__((format(printf, 4, 0))) static void
vreport_at(struct loader *ld, uint32_t line, uint32_t col, const char *fmt, va_list ap)
{
	if (ld->out_of_memory) /* the load fails with that one line */
		return;
	va_list again;
	va_copy(again, ap);
	int prefix = snprintf(NULL, 0, "%s:%u:%u: ", ld->file, line, col);
	int msg = vsnprintf(NULL, 0, fmt, ap);
	char *text = prefix < 0 || msg < 0 ? NULL : schema_alloc(ld, (size_t)prefix + (size_t)msg + 1, 1);
	if (text) {
		snprintf(text, (size_t)prefix + 1, "%s:%u:%u: ", ld->file, line, col);
		vsnprintf(text + prefix, (size_t)msg + 1, fmt, again);
		add_error(ld, line, col, text);
	}
	va_end(again);
}

void schema_report_at(struct loader *ld, uint32_t line, uint32_t col, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport_at(ld, line, col, fmt, ap);
	va_end(ap);
}

/* libyaml marks are 0-based, error lines 1-based. */
void schema_report(struct loader *ld, const yaml_node_t *at, const char *fmt, ...)
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

static void free_pending(struct loader *ld)
{
	for (uint32_t i = 0; i < ld->nerrors; i++)
		free(ld->errors[i].text);
	free(ld->errors);
	ld->errors = NULL;
	ld->nerrors = ld->errors_cap = 0;
}

void schema_error_line(struct config_errors *errs, const char *fmt, ...)
{
	*errs = (struct config_errors){ calloc(1, sizeof errs->lines[0]), 0 };
	va_list ap;
	va_start(ap, fmt);
	if (errs->lines && vasprintf(&errs->lines[0], fmt, ap) >= 0)
		errs->count = 1;
	va_end(ap);
	if (!errs->count) {
		free(errs->lines);
		errs->lines = NULL;
	}
}

/* The line of a load that ran out of memory is allocated outside the fault injection. */
bool schema_hand_over_errors(struct loader *ld, struct config_errors *errs)
{
	*errs = (struct config_errors){ 0 };
	if (ld->nerrors && !ld->out_of_memory)
		errs->lines = schema_alloc(ld, ld->nerrors, sizeof errs->lines[0]);
	if (ld->out_of_memory) {
		free_pending(ld);
		schema_error_line(errs, "%s: %s", ld->file, SCHEMA_OUT_OF_MEMORY);
		return false;
	}
	if (ld->nerrors)
		qsort(ld->errors, ld->nerrors, sizeof ld->errors[0], error_cmp);
	errs->count = ld->nerrors;
	for (uint32_t i = 0; i < ld->nerrors; i++)
		errs->lines[i] = ld->errors[i].text;
	ld->nerrors = 0; /* the texts are errs' now */
	free_pending(ld);
	return errs->count == 0;
}

/* ---------------------------------------------------------------------------------------------
 * The document
 */

/* Reports a libyaml parse failure at its problem position. */
static void report_yaml_error(struct loader *ld, const yaml_parser_t *parser, const char *input)
{
	if (parser->error == YAML_MEMORY_ERROR) {
		schema_out_of_memory(ld);
		return;
	}
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
		schema_report_at(ld, line, col, "YAML syntax error: %s (%s at %u:%u)", problem,
				 parser->context, (unsigned)parser->context_mark.line + 1,
				 (unsigned)parser->context_mark.column + 1);
	else
		schema_report_at(ld, line, col, "YAML syntax error: %s", problem);
}

bool schema_read_document(struct loader *ld, const char *yaml, size_t len)
{
	yaml_parser_t parser;
	if (!yaml_parser_initialize(&parser)) {
		schema_out_of_memory(ld);
		return false;
	}
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
			schema_report(ld, root, "only one YAML document is allowed");
		yaml_document_delete(&extra);
	}
	yaml_parser_delete(&parser);
	return true;
}

/* ---------------------------------------------------------------------------------------------
 * Nodes
 */

yaml_node_t *schema_node(struct loader *ld, int index)
{
	return yaml_document_get_node(&ld->doc, index);
}

const char *schema_text(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

bool schema_is_null(const yaml_node_t *n)
{
	if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	const char *s = schema_text(n);
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

const char *schema_describe(const yaml_node_t *n, char *buf, size_t size)
{
	if (schema_is_null(n))
		return "an empty value";
	if (n->type != YAML_SCALAR_NODE)
		return kind_name(n->type);
	snprintf(buf, size, "'%.60s'", schema_text(n));
	return buf;
}

bool schema_expect_kind(struct loader *ld, const yaml_node_t *n, yaml_node_type_t kind,
			const char *what)
{
	if (n->type == kind && !(kind == YAML_SCALAR_NODE && schema_is_null(n)))
		return true;
	char buf[80];
	schema_report(ld, n, "%s: expected %s, got %s", what, kind_name(kind),
		      schema_describe(n, buf, sizeof buf));
	return false;
}

const char *schema_expect_scalar(struct loader *ld, const yaml_node_t *n, const char *what)
{
	return schema_expect_kind(ld, n, YAML_SCALAR_NODE, what) ? schema_text(n) : NULL;
}

yaml_node_pair_t *schema_find_pair(struct loader *ld, const yaml_node_t *map, const char *key)
{
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		const yaml_node_t *k = schema_node(ld, p->key);
		if (k->type == YAML_SCALAR_NODE && !strcmp(schema_text(k), key))
			return p;
	}
	return NULL;
}

uint32_t schema_pair_count(const yaml_node_t *map)
{
	return (uint32_t)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
}

uint32_t schema_item_count(const yaml_node_t *seq)
{
	return (uint32_t)(seq->data.sequence.items.top - seq->data.sequence.items.start);
}

void schema_check_keys(struct loader *ld, const yaml_node_t *map, const char *section)
{
	char buf[80];
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		const yaml_node_t *key = schema_node(ld, p->key);
		if (key->type != YAML_SCALAR_NODE) {
			schema_report(ld, key, "%s: a key must be a scalar, got %s", section,
				      schema_describe(key, buf, sizeof buf));
			continue;
		}
		const yaml_node_pair_t *first = schema_find_pair(ld, map, schema_text(key));
		if (first != p) {
			const yaml_node_t *fk = schema_node(ld, first->key);
			schema_report(ld, key, "%s: duplicate key '%s' (first at %u:%u)", section,
				      schema_text(key), (unsigned)fk->start_mark.line + 1,
				      (unsigned)fk->start_mark.column + 1);
		}
	}
}

void schema_label(struct loader *ld, const yaml_node_t *map, const char *kind, uint32_t index,
		  char *buf, size_t size)
{
	const yaml_node_pair_t *p = schema_find_pair(ld, map, "name");
	const yaml_node_t *name = p ? schema_node(ld, p->value) : NULL;
	if (name && name->type == YAML_SCALAR_NODE && !schema_is_null(name))
		snprintf(buf, size, "%s '%.60s'", kind, schema_text(name));
	else
		snprintf(buf, size, "%s #%u", kind, index + 1);
}

/* ---------------------------------------------------------------------------------------------
 * The walker
 */

void *schema_field(void *obj, const struct rule *rule)
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

void schema_walk_mapping(struct loader *ld, yaml_node_t *map, const char *section,
			 const struct rule *rules, void *obj)
{
	schema_check_keys(ld, map, section);
	for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
		const yaml_node_t *key = schema_node(ld, p->key);
		if (key->type != YAML_SCALAR_NODE || schema_find_pair(ld, map, schema_text(key)) != p ||
		    find_rule(rules, schema_text(key)))
			continue;
		char valid[512] = "";
		for (const struct rule *r = rules; r->key; r++)
			append_word(valid, sizeof valid, r->key);
		schema_report(ld, key, "%s: unknown key '%s' (valid keys: %s)", section,
			      schema_text(key), valid);
	}
	for (const struct rule *r = rules; r->key && !ld->out_of_memory; r++) {
		yaml_node_pair_t *p = schema_find_pair(ld, map, r->key);
		if (p)
			r->parse(ld, schema_node(ld, p->value), obj, r);
		else if (r->required)
			schema_report(ld, map, "%s: missing required key '%s'", section, r->key);
	}
}

/* ---------------------------------------------------------------------------------------------
 * Values
 */

bool schema_parse_digits(const char **s, uint64_t *out)
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

bool schema_parse_number(const char *s, uint64_t *out)
{
	return schema_parse_digits(&s, out) && !*s;
}

bool schema_parse_size(const char *s, uint64_t *out)
{
	static const struct { const char *suffix; unsigned shift; } units[] = {
		{ "", 0 }, { "KiB", 10 }, { "MiB", 20 }, { "GiB", 30 },
	};
	uint64_t n;
	if (!schema_parse_digits(&s, &n))
		return false;
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(s, units[i].suffix))
			continue;
		*out = n > (UINT64_MAX >> units[i].shift) ? UINT64_MAX : n << units[i].shift;
		return true;
	}
	return false;
}

bool schema_read_number(struct loader *ld, const yaml_node_t *v, const struct rule *rule,
			bool (*parse)(const char *, uint64_t *), const char *expected,
			uint64_t *out)
{
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return false;
	bool negative = s[0] == '-'; /* well-formed, but below every range */
	uint64_t n;
	if (!parse(s + negative, &n)) {
		schema_report(ld, v, "%s: expected %s, got '%s'", rule->key, expected, s);
		return false;
	}
	if ((negative && n) || n < rule->min || n > rule->max) {
		schema_report(ld, v, "%s: %s is out of range %llu..%llu", rule->key, s,
			      (unsigned long long)rule->min, (unsigned long long)rule->max);
		return false;
	}
	*out = n;
	return true;
}

void schema_parse_u32(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	uint64_t n;
	if (schema_read_number(ld, v, rule, schema_parse_number, "an integer", &n))
		*(uint32_t *)schema_field(obj, rule) = (uint32_t)n;
}

void schema_parse_size32(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	uint64_t n;
	if (schema_read_number(ld, v, rule, schema_parse_size, SCHEMA_SIZE_EXPECTED, &n))
		*(uint32_t *)schema_field(obj, rule) = (uint32_t)n;
}

void schema_parse_size64(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	uint64_t n;
	if (schema_read_number(ld, v, rule, schema_parse_size, SCHEMA_SIZE_EXPECTED, &n))
		*(uint64_t *)schema_field(obj, rule) = n;
}

void schema_parse_duration(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (s && !config_parse_duration(s, (uint32_t *)schema_field(obj, rule)))
		schema_report(ld, v,
			      "%s: invalid duration '%s' (a whole number and a unit: ms, s, m or h; "
			      "above 0, at most 24h)",
			      rule->key, s);
}

/* Stores the index of the word in rule->words into a uint8_t field. */
void schema_parse_enum(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	char accepted[256] = "";
	for (uint8_t i = 0; rule->words[i]; i++) {
		if (!strcmp(s, rule->words[i])) {
			*(uint8_t *)schema_field(obj, rule) = i;
			return;
		}
		append_word(accepted, sizeof accepted, rule->words[i]);
	}
	schema_report(ld, v, "%s: invalid value '%s' (expected one of %s)", rule->key, s, accepted);
}

/* Only true and false: YAML 1.1's yes, no, on and off are refused, as readers disagree on them. */
void schema_parse_bool(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	const char *s = schema_expect_scalar(ld, v, rule->key);
	if (!s)
		return;
	if (!strcmp(s, "true") || !strcmp(s, "false"))
		*(bool *)schema_field(obj, rule) = s[0] == 't';
	else
		schema_report(ld, v, "%s: expected true or false, got '%s'", rule->key, s);
}

bool schema_valid_name(const char *s)
{
	return *s && s[strspn(s, SCHEMA_ALNUM "_.-")] == 0;
}

const char *schema_read_name(struct loader *ld, const yaml_node_t *v, const char *what)
{
	const char *s = schema_expect_scalar(ld, v, what);
	if (s && !schema_valid_name(s)) {
		schema_report(ld, v, "%s: invalid name '%s' (use letters, digits, '_', '.' and '-')",
			      what, s);
		return NULL;
	}
	return s;
}

bool schema_valid_token(const char *s, const char *stops)
{
	if (!*s)
		return false;
	for (const unsigned char *c = (const unsigned char *)s; *c; c++)
		if (*c <= ' ' || *c >= 0x7f || strchr(stops, *c))
			return false;
	return true;
}

bool schema_check_path(struct loader *ld, const yaml_node_t *v, const char *what, const char *s)
{
	if (s[0] != '/') {
		schema_report(ld, v, "%s: '%s' must start with '/'", what, s);
		return false;
	}
	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		if (*c <= ' ' || *c == 0x7f || *c == '?' || *c == '#') {
			schema_report(ld, v,
				      "%s: '%s' must not contain spaces, control characters, '?' or '#'",
				      what, s);
			return false;
		}
	}
	return true;
}

void schema_read_address_list(struct loader *ld, yaml_node_t *v, const char *what,
			      struct rw_sockaddr **list, uint32_t *count,
			      schema_address_check_fn *check, void *ctx)
{
	if (!schema_expect_kind(ld, v, YAML_SEQUENCE_NODE, what))
		return;
	if (schema_item_count(v) == 0) {
		schema_report(ld, v, "%s: at least one address is required", what);
		return;
	}
	*list = schema_alloc(ld, schema_item_count(v), sizeof **list);
	if (!*list)
		return;
	for (yaml_node_item_t *i = v->data.sequence.items.start; i < v->data.sequence.items.top; i++) {
		const yaml_node_t *item = schema_node(ld, *i);
		struct rw_sockaddr addr;
		if (!schema_read_address(ld, item, what, &addr))
			continue;
		if (check)
			check(ld, item, &addr, ctx);
		(*list)[(*count)++] = addr;
	}
}

bool schema_read_address(struct loader *ld, const yaml_node_t *v, const char *what,
			 struct rw_sockaddr *out)
{
	const char *s = schema_expect_scalar(ld, v, what);
	if (!s)
		return false;
	if (!config_parse_sockaddr(s, out)) {
		schema_report(ld, v,
			      "%s: invalid address '%s' (expected a.b.c.d:port or [ipv6]:port, numeric, "
			      "port 1..65535)",
			      what, s);
		return false;
	}
	return true;
}

void schema_free_addresses(struct rw_sockaddr *list, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		free(list[i].text);
	free(list);
}
