/* main.c — the command line (run, check, limits, probe, hash-password, --help, --version) and the order of a
 * run: the XDP limiter attached, the workers started, the control plane (control.h: signals,
 * reload, admin API) run until SIGTERM or SIGINT, then the workers drained and the limiter
 * detached. */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "control.h"
#include "limits_cmd.h"
#include "log.h"
#include "password.h"
#include "probe.h"
#include "worker.h"
#include "xdp.h"

static void usage(FILE *to)
{
	fputs("usage: ringway run -c FILE [--log-level debug|info|warn|error]\n"
	      "       ringway check -c FILE\n"
	      "       ringway limits [--pin-path DIR | -c FILE] show|set|unset|top|stats ...\n"
	      "       ringway probe [--json] [--interface IF]\n"
	      "       ringway hash-password [ITERATIONS] < password\n"
	      "       ringway --help | --version\n"
	      "\n"
	      "  run     run the gateway in the foreground (logs on stderr); SIGTERM or SIGINT\n"
	      "          stops accepting, lets in-flight requests finish (drain_timeout), exits 0;\n"
	      "          SIGHUP reloads the configuration file, SIGUSR1 reopens the access log\n"
	      "  check   validate a configuration: prints ok, or FILE:LINE:COL: message lines\n"
	      "  limits  inspect and change the XDP limiter's pinned maps (ringway limits --help)\n"
	      "  probe   what this host's kernel offers and what ringway will use of it; exits 1\n"
	      "          when something ringway needs is missing (ringway probe --help)\n"
	      "  hash-password  the password_hash of a consumer's basic credentials for the\n"
	      "          password on stdin (its first line): pbkdf2-sha256:ITERATIONS:SALT:HASH,\n"
	      "          100000 iterations unless given (1000 to 10000000)\n",
	      to);
}

static struct rw_config *load(const char *path)
{
	struct config_errors errs = { 0 };
	struct rw_config *cfg = config_load_file(path, &errs);
	for (uint32_t i = 0; i < errs.count; i++)
		fprintf(stderr, "%s\n", errs.lines[i]);
	config_errors_free(&errs);
	return cfg;
}

static int cmd_run(struct rw_config *cfg)
{
	control_block_signals(); /* before any thread starts: they all inherit the mask */
	struct control *ctl = control_open(cfg);
	struct xdp_plane *xdp = NULL;
	if (!ctl || xdp_start(&cfg->xdp, &xdp)) {
		control_close(ctl);
		config_unref(cfg);
		return 1;
	}
	struct worker_set ws = { 0 };
	if (workers_start(&ws, cfg)) {
		xdp_stop(xdp);
		control_close(ctl);
		config_unref(cfg);
		return 1;
	}
	for (uint32_t f = 0; f < cfg->nfrontends; f++)
		for (uint32_t i = 0; i < cfg->frontends[f].nlistens; i++)
			log_info("frontend %s listening on %s", cfg->frontends[f].name,
				 cfg->frontends[f].listens[i].text);
	config_unref(cfg); /* the control plane holds the running snapshot, reloads replace it */
	int sig = control_run(ctl, &ws, xdp);
	if (sig > 0)
		log_info("%s: draining (up to drain_timeout), then stopping", strsignal(sig));
	control_close(ctl);
	workers_stop(&ws);
	xdp_stop(xdp);
	log_info("stopped");
	return sig > 0 ? 0 : 1;
}

/* ringway hash-password [ITERATIONS]: the first line of stdin, hashed. */
static int hash_password_main(int argc, char **argv)
{
	unsigned long iterations = PASSWORD_ITERATIONS;
	char *end = NULL;
	if (argc > 2 || (argc == 2 && ((iterations = strtoul(argv[1], &end, 10)) <
				       PASSWORD_MIN_ITERATIONS || iterations > PASSWORD_MAX_ITERATIONS ||
				       *end))) {
		fprintf(stderr, "usage: ringway hash-password [ITERATIONS: 1000 to 10000000] < password\n");
		return 2;
	}
	char password[1024];
	if (!fgets(password, sizeof password, stdin)) {
		fprintf(stderr, "ringway hash-password: no password on stdin\n");
		return 1;
	}
	size_t len = strcspn(password, "\r\n");
	char out[PASSWORD_TEXT_MAX];
	bool ok = len > 0 && password_hash_make(password, len, (uint32_t)iterations, out, sizeof out);
	memset(password, 0, sizeof password);
	if (!ok) {
		fprintf(stderr, "ringway hash-password: %s\n",
			len ? "no random salt could be had" : "the password is empty");
		return 1;
	}
	puts(out);
	return 0;
}

static int parse_level(const char *name)
{
	static const char *levels[] = { "debug", "info", "warn", "error" };
	for (int i = 0; i < 4; i++)
		if (strcmp(name, levels[i]) == 0)
			return i;
	return -1;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "log-level", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ 0 },
	};
	if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
		usage(stdout);
		return 0;
	}
	if (argc >= 2 && (!strcmp(argv[1], "--version") || !strcmp(argv[1], "-V"))) {
		printf("ringway %s\n", RINGWAY_VERSION);
		return 0;
	}
	if (argc >= 2 && !strcmp(argv[1], "limits"))
		return limits_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "probe"))
		return probe_main(argc - 1, argv + 1);
	if (argc >= 2 && !strcmp(argv[1], "hash-password"))
		return hash_password_main(argc - 1, argv + 1);
	if (argc < 2 || (strcmp(argv[1], "run") != 0 && strcmp(argv[1], "check") != 0)) {
		if (argc >= 2)
			fprintf(stderr, "ringway: unknown command '%s'\n", argv[1]);
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	const char *config = NULL;
	int c, level;
	while ((c = getopt_long(argc - 1, argv + 1, "c:h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			config = optarg;
			break;
		case 'l':
			if ((level = parse_level(optarg)) < 0) {
				fprintf(stderr, "ringway: unknown log level '%s'\n", optarg);
				return 2;
			}
			log_set_level((enum log_level)level);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (!config) {
		fprintf(stderr, "ringway %s: -c FILE is required\n", cmd);
		return 2;
	}
	struct rw_config *cfg = load(config);
	if (!cfg)
		return 1;
	if (strcmp(cmd, "check") == 0) {
		puts("ok");
		config_unref(cfg);
		return 0;
	}
	return cmd_run(cfg);
}
