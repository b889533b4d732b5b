#include <curl/curl.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "commands.h"

struct command {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
};

/* Commands are added here as they are implemented. */
static const struct command commands[] = {
    {"keygen", "create a signing key pair", cmd_keygen},
    {"export", "pull images into one signed bundle", cmd_export},
    {"verify", "audit a bundle offline with the trusted key", cmd_verify},
    {"inspect", "list what a bundle holds (without verifying it)", cmd_inspect},
    {"import", "verify a bundle and push it into a registry", cmd_import},
    {"unpack", "verify a bundle and write it as a plain tar for a loader",
     cmd_unpack},
    {"cache", "prune or clear the export cache", cmd_cache},
    {NULL, NULL, NULL},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: ferry COMMAND [OPTIONS]\n\n"
		   "Carry container images into air-gapped sites.\n\n"
		   "Commands:\n");
	for (const struct command *c = commands; c->name; c++)
		fprintf(f, "  %-9s %s\n", c->name, c->summary);
	if (!commands[0].name)
		fprintf(f, "  (none yet in this version)\n");
	fprintf(f, "\nRun 'ferry help COMMAND' (or 'ferry COMMAND --help') for "
		   "a command's options.\n"
		   "Exit codes: 0 ok, 1 failure, 2 usage, 3 network/registry,\n"
		   "4 authentication, 5 verification, 6 malformed bundle,\n"
		   "7 local I/O, 130 interrupted.\n");
}

/* `ferry help CMD` is `ferry CMD --help`. */
static int help_command(const char *name)
{
	for (const struct command *c = commands; c->name; c++) {
		if (strcmp(name, c->name) == 0) {
			char *av[] = {(char *)c->name, (char *)"--help", NULL};
			return c->run(2, av);
		}
	}
	cli_usage_error(NULL, "no command '%s' to show help for", name);
	return FERRY_EXIT_USAGE;
}

int main(int argc, char **argv)
{
	int rc;

	if (argc < 2) {
		usage(stderr);
		return FERRY_EXIT_USAGE;
	}
	if (!strcmp(argv[1], "help") && argc > 2)
		return help_command(argv[2]);
	if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") ||
	    !strcmp(argv[1], "help")) {
		usage(stdout);
		return FERRY_EXIT_OK;
	}
	if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
		cli_print_version();
		return FERRY_EXIT_OK;
	}
	for (const struct command *c = commands; c->name; c++) {
		if (strcmp(argv[1], c->name) != 0)
			continue;
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			fprintf(stderr, "ferry: error: cannot initialise "
					"libcurl\n");
			return FERRY_EXIT_FAILURE;
		}
		cli_install_signals();
		rc = c->run(argc - 1, argv + 1);
		curl_global_cleanup();
		return rc;
	}
	cli_usage_error(NULL, "unknown command '%s'", argv[1]);
	return FERRY_EXIT_USAGE;
}
