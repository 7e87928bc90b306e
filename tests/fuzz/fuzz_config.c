/* fuzz_config.c — libFuzzer harness for the configuration loader: any bytes must give either a
 * snapshot or error lines in FILE:LINE:COL form, never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config_errors errs = { 0 };
	struct rw_config *cfg = config_load_string("fuzz.yaml", (const char *)data, size, &errs);
	if (cfg && errs.count)
		abort(); /* a snapshot comes with no errors */
	if (!cfg && errs.count == 0)
		abort(); /* a refusal always says why */
	for (uint32_t i = 0; i < errs.count; i++)
		if (strncmp(errs.lines[i], "fuzz.yaml:", 10) != 0)
			abort();
	config_errors_free(&errs);
	if (cfg)
		config_unref(cfg);
	return 0;
}
