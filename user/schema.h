/* schema.h — the small API every configuration section is written with: the loader (the YAML
 * document, the snapshot being built, every error collected as "FILE:LINE:COL: message" and
 * sorted by position, out of memory recorded instead of aborting), node helpers, the rule-driven
 * mapping walker and the typed parsers of values (numbers, sizes, durations, enums, booleans,
 * names, paths, address lists). config.c walks the top level through its table of sections
 * (struct config_section); each section is a set of rules and the hooks below. */
#ifndef RINGWAY_SCHEMA_H
#define RINGWAY_SCHEMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

#include "config.h"

struct pending_error;

struct loader {
	const char *file;            /* FILE of the error lines */
	yaml_document_t doc;
	struct rw_config *cfg;       /* the snapshot being built */
	struct pending_error *errors;
	uint32_t nerrors, errors_cap;
	bool out_of_memory;          /* an allocation failed: the load fails with one line saying so */
};

/* ---- Errors ---------------------------------------------------------------------------------- */

/* Reports an error at the start of a node, or at a 1-based line and column. */
__attribute__((format(printf, 3, 4))) void schema_report(struct loader *ld, const yaml_node_t *at,
							  const char *fmt, ...);
__attribute__((format(printf, 4, 5))) void schema_report_at(struct loader *ld, uint32_t line,
							     uint32_t col, const char *fmt, ...);

/* Reads yaml into ld->doc (the first document; a second one is an error). Returns false when
 * there is no document to check (the syntax error, or out of memory, recorded). */
bool schema_read_document(struct loader *ld, const char *yaml, size_t len);

/* Moves the collected errors, sorted by position, into errs; after out of memory errs holds the
 * one line "FILE: out of memory while loading the configuration" instead. Returns true when the
 * load succeeded: no error, and memory sufficed. */
bool schema_hand_over_errors(struct loader *ld, struct config_errors *errs);

#define SCHEMA_OUT_OF_MEMORY "out of memory while loading the configuration"

/* Sets errs to exactly one line (or none when even that line cannot be allocated). */
__attribute__((format(printf, 2, 3))) void schema_error_line(struct config_errors *errs,
							      const char *fmt, ...);

/* ---- Memory: a failed allocation is recorded in ld (and NULL returned), never an abort ------ */

void *schema_alloc(struct loader *ld, size_t n, size_t size); /* zeroed; n = 0 gives one */
char *schema_strdup(struct loader *ld, const char *s);
void schema_out_of_memory(struct loader *ld);                 /* for allocations made elsewhere */

/* Fault injection for tests: when set to N > 0, the Nth allocation through schema_alloc from now
 * on fails (then it is 0 again). Per thread. */
extern _Thread_local unsigned schema_fail_allocation;

/* ---- Nodes ----------------------------------------------------------------------------------- */

yaml_node_t *schema_node(struct loader *ld, int index);
const char *schema_text(const yaml_node_t *n); /* a scalar's text */
bool schema_is_null(const yaml_node_t *n);     /* `key:`, `~` or `null` */
/* "a mapping", "a sequence", "an empty value" or the scalar quoted, written in buf if needed. */
const char *schema_describe(const yaml_node_t *n, char *buf, size_t size);
/* True if n is of that kind (a null is no scalar); else reports "WHAT: expected ..., got ...". */
bool schema_expect_kind(struct loader *ld, const yaml_node_t *n, yaml_node_type_t kind,
			const char *what);
/* The scalar text of n, or NULL after reporting that n is not a scalar. */
const char *schema_expect_scalar(struct loader *ld, const yaml_node_t *n, const char *what);
yaml_node_pair_t *schema_find_pair(struct loader *ld, const yaml_node_t *map, const char *key);
uint32_t schema_pair_count(const yaml_node_t *map);
uint32_t schema_item_count(const yaml_node_t *seq);
/* Reports keys that are not scalars and keys that appear twice. */
void schema_check_keys(struct loader *ld, const yaml_node_t *map, const char *section);
/* "frontend 'public'" when the mapping has a usable name, else "frontend #2" (index + 1). */
void schema_label(struct loader *ld, const yaml_node_t *map, const char *kind, uint32_t index,
		  char *buf, size_t size);

/* ---- Rules and the walker -------------------------------------------------------------------- */

struct rule;
/* Reads value into obj (the object the walked mapping fills), as rule says. */
typedef void schema_parse_fn(struct loader *ld, yaml_node_t *value, void *obj,
			     const struct rule *rule);

struct rule {
	const char *key;
	schema_parse_fn *parse;
	size_t offset;            /* of the field that parse fills, inside obj */
	bool required;
	uint64_t min, max;        /* integers and sizes */
	const char *const *words; /* enumerations: NULL-terminated, index = stored value */
};

/* Checks map against rules (a table ended by { 0 }), then runs each rule's parser on its value
 * in the order of the rules (so a rule may rely on fields that earlier rules filled). Unknown
 * keys are reported with the list of valid ones, repeated and missing required keys too; for a
 * repeated key only the first value is read. Stops early after out of memory. */
void schema_walk_mapping(struct loader *ld, yaml_node_t *map, const char *section,
			 const struct rule *rules, void *obj);

/* The field at rule->offset inside obj. */
void *schema_field(void *obj, const struct rule *rule);

/* ---- Values ---------------------------------------------------------------------------------- */

/* Text forms: decimal digits (advancing *s past them), a whole number, a size ("16KiB", "10MiB",
 * "1GiB"); each saturates at UINT64_MAX. */
bool schema_parse_digits(const char **s, uint64_t *out);
bool schema_parse_number(const char *s, uint64_t *out);
bool schema_parse_size(const char *s, uint64_t *out);

#define SCHEMA_SIZE_EXPECTED "a size (a whole number of bytes, or with KiB, MiB or GiB)"

/* Reads a number within [rule->min, rule->max], written as parse accepts it; expected names the
 * form in the error line ("an integer"). */
bool schema_read_number(struct loader *ld, const yaml_node_t *v, const struct rule *rule,
			bool (*parse)(const char *, uint64_t *), const char *expected,
			uint64_t *out);

/* Rule parsers: each fills the field at rule->offset (uint32_t, uint64_t, uint8_t for enums,
 * bool). */
schema_parse_fn schema_parse_u32, schema_parse_size32, schema_parse_size64, schema_parse_duration,
	schema_parse_enum, schema_parse_bool;

#define SCHEMA_ALNUM "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

/* A name of an upstream, frontend or route ([A-Za-z0-9_.-]+): the text, or NULL (reported). */
bool schema_valid_name(const char *s);
const char *schema_read_name(struct loader *ld, const yaml_node_t *v, const char *what);

/* A header name or a query parameter name: non-empty visible ASCII without the bytes of stops. */
bool schema_valid_token(const char *s, const char *stops);
#define SCHEMA_HEADER_SEPARATORS "()<>@,;:\\\"/[]?={}" /* what a header name cannot hold */

/* Reports why s is unusable as an absolute path (no spaces, controls, '?' or '#'), or returns
 * true. */
bool schema_check_path(struct loader *ld, const yaml_node_t *v, const char *what, const char *s);

/* Reads one address (a scalar) into out, or reports why it is not one. */
bool schema_read_address(struct loader *ld, const yaml_node_t *v, const char *what,
			 struct rw_sockaddr *out);
/* Reads a non-empty sequence of addresses into *list; check (optional) vets each one, with ctx. */
typedef void schema_address_check_fn(struct loader *ld, const yaml_node_t *item,
				     const struct rw_sockaddr *addr, void *ctx);
void schema_read_address_list(struct loader *ld, yaml_node_t *v, const char *what,
			      struct rw_sockaddr **list, uint32_t *count,
			      schema_address_check_fn *check, void *ctx);
void schema_free_addresses(struct rw_sockaddr *list, uint32_t n);

/* ---- Sections -------------------------------------------------------------------------------- */

/* One top-level key of the configuration and everything about it, in one place. config.c lists
 * the sections in one table; a section's parser may read the sections listed before it (routes
 * name upstreams). */
struct config_section {
	struct rule rule;                                     /* its key and parser; obj: rw_config */
	void (*defaults)(struct loader *ld, struct rw_config *cfg); /* before the walk; NULL: zeros */
	void (*compile)(struct loader *ld, struct rw_config *cfg);  /* after a load without errors */
	void (*free)(struct rw_config *cfg); /* what it holds, also when half-built; NULL: nothing */
};

#endif
