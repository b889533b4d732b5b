/* Entry points of the subcommands: argv[0] is the command name. */
#ifndef FERRY_COMMANDS_H
#define FERRY_COMMANDS_H

int cmd_keygen(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_unpack(int argc, char **argv);
int cmd_cache(int argc, char **argv);

#endif
