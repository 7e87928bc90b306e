/* probe.h — `ringway probe`: what this host's kernel offers (io_uring set-up modes and operations,
 * buffer rings, multishot accept and recv, BPF and XDP per interface) and what ringway will use of
 * it. It changes nothing on the host. */
#ifndef RINGWAY_PROBE_H
#define RINGWAY_PROBE_H

/* argv[0] is "probe". Returns the exit code: 0 (ringway can run here), 1 (something it needs is
 * missing), 2 (bad usage). */
int probe_main(int argc, char **argv);

#endif
