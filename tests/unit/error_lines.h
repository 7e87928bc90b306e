/* error_lines.h — shared by the unit tests of the configuration: whether the error lines are
 * exactly the wanted ones, in order (when not, both lists are logged), and loading a YAML text as
 * "t.yaml" that must succeed (load_ok) or fail with exactly some lines (EXPECT_ERRORS). */
#ifndef RINGWAY_TEST_ERROR_LINES_H
#define RINGWAY_TEST_ERROR_LINES_H

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <string.h>

#include "config.h"

static inline bool same_error_lines(const struct config_errors *errs, const char *const *want,
				    size_t nwant)
{
	bool same = errs->count == nwant;
	for (size_t i = 0; same && i < nwant; i++)
		same = strcmp(errs->lines[i], want[i]) == 0;
	if (!same) {
		for (size_t i = 0; i < nwant; i++)
			cr_log_error("wanted: %s", want[i]);
		for (uint32_t i = 0; i < errs->count; i++)
			cr_log_error("got:    %s", errs->lines[i]);
	}
	return same;
}

static inline struct rw_config *load(const char *yaml, struct config_errors *errs)
{
	return config_load_string("t.yaml", yaml, strlen(yaml), errs);
}

/* Loads yaml, which must succeed; the caller unrefs. */
static inline struct rw_config *load_ok(const char *yaml)
{
	struct config_errors errs = { 0 };
	struct rw_config *cfg = load(yaml, &errs);
	for (uint32_t i = 0; i < errs.count; i++)
		cr_log_error("unexpected: %s", errs.lines[i]);
	cr_assert_not_null(cfg);
	cr_assert_eq(errs.count, 0);
	config_errors_free(&errs);
	return cfg;
}

/* Loads yaml, which must fail with exactly these error lines, in this order. */
static inline void expect_errors(const char *yaml, const char *const *want, size_t nwant)
{
	struct config_errors errs = { 0 };
	struct rw_config *cfg = load(yaml, &errs);
	bool same = same_error_lines(&errs, want, nwant);
	cr_assert_null(cfg);
	cr_assert(same, "error lines differ (see above)");
	config_errors_free(&errs);
}

#define EXPECT_ERRORS(yaml, ...)                                                             \
	do {                                                                                 \
		const char *const want_[] = { __VA_ARGS__ };                                 \
		expect_errors((yaml), want_, sizeof want_ / sizeof want_[0]);                \
	} while (0)

#endif
