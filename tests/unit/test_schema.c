/* test_schema.c — the schema API on its own: a small rule set of every typed parser walked over
 * YAML strings (values stored, unknown keys with the list of valid ones, wrong kinds, missing and
 * repeated keys, each parser's error text at its line and column, errors sorted by position),
 * address lists with a check, names, and out of memory recorded (never an abort) through the
 * fault-injection countdown. */
#include <criterion/criterion.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "error_lines.h"
#include "schema.h"

enum color { RED, GREEN, BLUE };
static const char *const color_words[] = { "red", "green", "blue", NULL };

struct thing {
	uint32_t count;
	uint32_t small_size;
	uint64_t size;
	uint32_t timeout_ms;
	uint8_t color;
	bool on;
	char *name;
	struct rw_sockaddr *addrs;
	uint32_t naddrs;
};

static void parse_name(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct thing *t = obj;
	const char *s = schema_read_name(ld, v, rule->key);
	if (s)
		t->name = schema_strdup(ld, s);
}

/* Port 9 is refused, to show that the check sees every address with its item and ctx. */
static void no_port_9(struct loader *ld, const yaml_node_t *item, const struct rw_sockaddr *addr,
		      void *ctx)
{
	if (strstr(addr->text, ":9") && !strcmp(strstr(addr->text, ":9"), ":9"))
		schema_report(ld, item, "%s: port 9 refused by %s", addr->text, (const char *)ctx);
}

static void parse_addrs(struct loader *ld, yaml_node_t *v, void *obj, const struct rule *rule)
{
	struct thing *t = obj;
	schema_read_address_list(ld, v, rule->key, &t->addrs, &t->naddrs, no_port_9, "the test");
}

static const struct rule thing_rules[] = {
	{ .key = "count", .parse = schema_parse_u32, .required = true, .min = 1, .max = 10,
	  .offset = offsetof(struct thing, count) },
	{ .key = "small_size", .parse = schema_parse_size32, .min = 0, .max = 65536,
	  .offset = offsetof(struct thing, small_size) },
	{ .key = "size", .parse = schema_parse_size64, .min = 0, .max = 1ull << 40,
	  .offset = offsetof(struct thing, size) },
	{ .key = "timeout", .parse = schema_parse_duration,
	  .offset = offsetof(struct thing, timeout_ms) },
	{ .key = "color", .parse = schema_parse_enum, .words = color_words,
	  .offset = offsetof(struct thing, color) },
	{ .key = "on", .parse = schema_parse_bool, .offset = offsetof(struct thing, on) },
	{ .key = "name", .parse = parse_name },
	{ .key = "addrs", .parse = parse_addrs },
	{ 0 }
};

static void thing_free(struct thing *t)
{
	free(t->name);
	schema_free_addresses(t->addrs, t->naddrs);
}

/* Walks yaml (a mapping) with thing_rules into *t; returns whether the load succeeded, with the
 * error lines in errs. */
static bool walk(const char *yaml, struct thing *t, struct config_errors *errs)
{
	struct loader ld = { .file = "t.yaml" };
	*t = (struct thing){ .color = GREEN };
	if (schema_read_document(&ld, yaml, strlen(yaml))) {
		yaml_node_t *root = yaml_document_get_root_node(&ld.doc);
		if (schema_expect_kind(&ld, root, YAML_MAPPING_NODE, "thing"))
			schema_walk_mapping(&ld, root, "thing", thing_rules, t);
		yaml_document_delete(&ld.doc);
	}
	return schema_hand_over_errors(&ld, errs);
}

static void expect_lines(const char *yaml, const char *const *want, size_t nwant)
{
	struct thing t;
	struct config_errors errs;
	bool ok = walk(yaml, &t, &errs);
	bool same = same_error_lines(&errs, want, nwant);
	cr_assert_not(ok);
	cr_assert(same, "error lines differ (see above)");
	config_errors_free(&errs);
	thing_free(&t);
}

#define EXPECT_LINES(yaml, ...)                                                              \
	do {                                                                                 \
		const char *const want_[] = { __VA_ARGS__ };                                 \
		expect_lines((yaml), want_, sizeof want_ / sizeof want_[0]);                 \
	} while (0)

Test(schema, every_parser_stores_its_value)
{
	struct thing t;
	struct config_errors errs;
	cr_assert(walk("count: 7\nsmall_size: 64KiB\nsize: 2GiB\ntimeout: 1500ms\ncolor: blue\n"
		       "on: true\nname: a.b-c_d\naddrs: [\"127.0.0.1:80\", \"[::1]:8080\"]\n",
		       &t, &errs));
	cr_assert_eq(errs.count, 0);
	cr_assert_eq(t.count, 7);
	cr_assert_eq(t.small_size, 65536);
	cr_assert_eq(t.size, 2ull << 30);
	cr_assert_eq(t.timeout_ms, 1500);
	cr_assert_eq(t.color, BLUE);
	cr_assert(t.on);
	cr_assert_str_eq(t.name, "a.b-c_d");
	cr_assert_eq(t.naddrs, 2);
	cr_assert_str_eq(t.addrs[1].text, "[::1]:8080");
	thing_free(&t);
}

Test(schema, unknown_key_lists_the_valid_ones)
{
	EXPECT_LINES("count: 1\ncolour: red\n",
		     "t.yaml:2:1: thing: unknown key 'colour' (valid keys: count, small_size, size, "
		     "timeout, color, on, name, addrs)");
}

Test(schema, wrong_kinds_missing_and_repeated_keys)
{
	EXPECT_LINES("size: [1]\ncolor: {a: 1}\non:\nsize: 2\n",
		     "t.yaml:1:1: thing: missing required key 'count'",
		     "t.yaml:1:7: size: expected a scalar, got a sequence",
		     "t.yaml:2:8: color: expected a scalar, got a mapping",
		     "t.yaml:3:4: on: expected a scalar, got an empty value",
		     "t.yaml:4:1: thing: duplicate key 'size' (first at 1:1)");
	EXPECT_LINES("- count: 1\n", "t.yaml:1:1: thing: expected a mapping, got a sequence");
}

Test(schema, each_parser_says_what_it_expected_at_the_value)
{
	EXPECT_LINES("count: x\nsmall_size: 1KB\nsize: -5\ntimeout: 5\ncolor: pink\non: yes\n",
		     "t.yaml:1:8: count: expected an integer, got 'x'",
		     "t.yaml:2:13: small_size: expected a size (a whole number of bytes, or with KiB, "
		     "MiB or GiB), got '1KB'",
		     "t.yaml:3:7: size: -5 is out of range 0..1099511627776",
		     "t.yaml:4:10: timeout: invalid duration '5' (a whole number and a unit: ms, s, m "
		     "or h; above 0, at most 24h)",
		     "t.yaml:5:8: color: invalid value 'pink' (expected one of red, green, blue)",
		     "t.yaml:6:5: on: expected true or false, got 'yes'");
	EXPECT_LINES("count: 11\nsmall_size: 1MiB\n", "t.yaml:1:8: count: 11 is out of range 1..10",
		     "t.yaml:2:13: small_size: 1MiB is out of range 0..65536");
}

Test(schema, names_and_addresses)
{
	EXPECT_LINES("count: 1\nname: 'a b'\naddrs: [\"127.0.0.1:80\", \"x:1\", \"127.0.0.1:9\"]\n",
		     "t.yaml:2:7: name: invalid name 'a b' (use letters, digits, '_', '.' and '-')",
		     "t.yaml:3:25: addrs: invalid address 'x:1' (expected a.b.c.d:port or "
		     "[ipv6]:port, numeric, port 1..65535)",
		     "t.yaml:3:32: 127.0.0.1:9: port 9 refused by the test");
	EXPECT_LINES("count: 1\naddrs: []\n", "t.yaml:2:8: addrs: at least one address is required");
}

/* Found in rule order (count before color), handed over in file order. */
Test(schema, errors_are_sorted_by_position)
{
	EXPECT_LINES("color: pink\ncount: 0\n",
		     "t.yaml:1:8: color: invalid value 'pink' (expected one of red, green, blue)",
		     "t.yaml:2:8: count: 0 is out of range 1..10");
}

Test(schema, syntax_errors_at_the_problem_mark)
{
	EXPECT_LINES("count: [1\n",
		     "t.yaml:2:1: YAML syntax error: did not find expected ',' or ']' (while parsing "
		     "a flow sequence at 1:8)");
}

Test(schema, a_failed_allocation_is_recorded_not_fatal)
{
	struct loader ld = { .file = "t.yaml" };
	schema_fail_allocation = 2; /* the second one from now */
	char *first = schema_strdup(&ld, "first");
	cr_assert_str_eq(first, "first");
	cr_assert_not(ld.out_of_memory);
	cr_assert_null(schema_alloc(&ld, 4, 4));
	cr_assert(ld.out_of_memory);
	cr_assert_eq(schema_fail_allocation, 0);
	char *after = schema_strdup(&ld, "after"); /* the countdown fails one allocation only */
	cr_assert_str_eq(after, "after");
	free(first);
	free(after);

	schema_report_at(&ld, 1, 1, "dropped: the load fails with the one line below");
	struct config_errors errs;
	cr_assert_not(schema_hand_over_errors(&ld, &errs));
	cr_assert_eq(errs.count, 1);
	cr_assert_str_eq(errs.lines[0], "t.yaml: out of memory while loading the configuration");
	config_errors_free(&errs);
}

/* Out of memory while errors are being collected: the errors found so far give way to the one
 * line. */
Test(schema, out_of_memory_while_reporting)
{
	for (unsigned n = 1;; n++) {
		struct thing t;
		struct config_errors errs;
		schema_fail_allocation = n;
		bool ok = walk("count: x\ncolor: pink\non: yes\nname: x\n", &t, &errs);
		bool injected = schema_fail_allocation == 0;
		schema_fail_allocation = 0;
		cr_assert_not(ok);
		thing_free(&t);
		if (!injected) { /* every allocation of the walk has failed once: done */
			cr_assert_eq(errs.count, 3);
			cr_assert_gt(n, 3);
			config_errors_free(&errs);
			break;
		}
		cr_assert_eq(errs.count, 1, "allocation %u", n);
		cr_assert_str_eq(errs.lines[0], "t.yaml: out of memory while loading the configuration");
		config_errors_free(&errs);
	}
}
