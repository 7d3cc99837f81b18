/*
 * cli: the command line, turned into a gh_conf. The one place that knows the
 * flag names; errors are printed as `gatehouse: --flag: "value": reason`.
 */
#ifndef GH_MAIN_CLI_H
#define GH_MAIN_CLI_H

#include <stdint.h>

#include "conf/quickstart.h"

#define GH_VERSION "0.1.0"

/* Upper bound for --workers: a typo must not fork thousands of processes. */
#define GH_CLI_MAX_WORKERS 1024
#define GH_CLI_MAX_CONNS   16777216 /* --max-connections; the same bound as max_connections (GH_CFG_MAX_CONNS) */

enum gh_cli_result {
    GH_CLI_RUN = 0, /* conf is complete: start the proxy */
    GH_CLI_DONE,    /* --help or --version was printed: exit 0 */
    GH_CLI_USAGE,   /* a usage error was printed: exit 2 */
};

/*
 * Fills c (already holding the defaults) from argv. Strings in c point into
 * argv, which lives as long as the process. Returns an enum gh_cli_result.
 */
int gh_cli_parse(gh_conf *c, int argc, char **argv);

/*
 * Parses a duration: "500ms", "10s", "5m", "1h", or a bare number of seconds,
 * into milliseconds. Zero, junk and values beyond UINT32_MAX ms are errors.
 * Returns 0 or -1; on error *why is a short reason for the message.
 */
int gh_cli_parse_duration(const char *s, uint32_t *ms, const char **why);

/* Prints "gatehouse: <message>\n" to stderr: the form of every startup error. */
void gh_cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
