#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

volatile sig_atomic_t cli_interrupted;

const char cli_common_help[] =
    "Common options:\n"
    "  -h, --help                 show this help\n"
    "      --version              print the version\n"
    "  -q, --quiet                print only errors\n"
    "  -v, --verbose              print more (retries, redirects)\n"
    "      --progress MODE        auto, plain, json or none\n"
    "      --ca-file FILE         also trust the CA certificates in FILE\n"
    "      --insecure-registry H  allow plain HTTP or unverified TLS for\n"
    "                             host H or H:PORT (repeatable)\n"
    "      --authfile FILE        Docker config.json with credentials\n"
    "                             (default: $REGISTRY_AUTH_FILE,\n"
    "                             $DOCKER_CONFIG/config.json,\n"
    "                             ~/.docker/config.json)\n";

int cli_common_opt(struct cli_common *c, int opt, const char *arg,
		   const char *cmd)
{
	switch (opt) {
	case 'q':
		c->quiet = 1;
		return 1;
	case 'v':
		c->verbose++;
		return 1;
	case CLI_OPT_VERSION:
		printf("ferry %s\n", FERRY_VERSION);
		return 2;
	case CLI_OPT_CA_FILE:
		c->ca_file = arg;
		return 1;
	case CLI_OPT_AUTHFILE:
		c->authfile = arg;
		return 1;
	case CLI_OPT_INSECURE: {
		const char **n;
		if (!*arg || strpbrk(arg, "/@ ")) {
			cli_usage_error(cmd,
					"--insecure-registry takes HOST or "
					"HOST:PORT, not '%s'",
					arg);
			return -1;
		}
		n = realloc(c->insecure, (c->n_insecure + 1) * sizeof(*n));
		if (!n) {
			fprintf(stderr, "ferry: out of memory\n");
			return -1;
		}
		c->insecure = n;
		c->insecure[c->n_insecure++] = arg;
		return 1;
	}
	case CLI_OPT_PROGRESS:
		if (!strcmp(arg, "auto"))
			c->progress = PROGRESS_AUTO;
		else if (!strcmp(arg, "plain"))
			c->progress = PROGRESS_PLAIN;
		else if (!strcmp(arg, "json"))
			c->progress = PROGRESS_JSON;
		else if (!strcmp(arg, "none"))
			c->progress = PROGRESS_NONE;
		else {
			cli_usage_error(cmd,
					"--progress takes auto, plain, json or "
					"none, not '%s'",
					arg);
			return -1;
		}
		return 1;
	}
	return 0;
}

void cli_common_release(struct cli_common *c)
{
	free(c->insecure);
	c->insecure = NULL;
	c->n_insecure = 0;
}

void cli_error(const struct ferr *e)
{
	fprintf(stderr, "ferry: error: %s\n", e->msg[0] ? e->msg : "failed");
}

void cli_usage_error(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "ferry%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry 'ferry %s%s--help'.\n", cmd ? cmd : "",
		cmd ? " " : "");
}

static void on_signal(int sig)
{
	(void)sig;
	cli_interrupted = 1;
}

void cli_install_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
}

static void log_stderr(void *ctx, const char *msg)
{
	(void)ctx;
	fprintf(stderr, "ferry: %s\n", msg);
}

void cli_reg_opts(const struct cli_common *c, const struct auth_store *creds,
		  struct reg_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->ca_file = c->ca_file;
	o->insecure = c->insecure;
	o->n_insecure = c->n_insecure;
	o->creds = creds;
	o->cancel = &cli_interrupted;
	if (c->verbose)
		o->log = log_stderr;
}
