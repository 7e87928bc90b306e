/* error_lines.h — shared by the unit tests of the configuration: whether the error lines are
 * exactly the wanted ones, in order; when not, both lists are logged. */
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

#endif
