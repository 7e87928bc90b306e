/* limits_cmd.h — `ringway limits`, the operator's command for the XDP limiter's pinned maps. */
#ifndef RINGWAY_LIMITS_CMD_H
#define RINGWAY_LIMITS_CMD_H

/* argv[0] is "limits". Returns the process exit code: 0, 1 (failed), 2 (bad usage). */
int limits_main(int argc, char **argv);

#endif
