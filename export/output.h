/* The export's output: one file, standard output ("-") or split volumes
 * (see output.c).  Internal to the export engine. */
#ifndef FERRY_EXPORT_OUTPUT_H
#define FERRY_EXPORT_OUTPUT_H

#include <stdint.h>

#include "arc.h"
#include "err.h"
#include "sig.h"

struct exp_out;

/* Start writing `path` ("-": standard output), split in parts of `split`
 * bytes when not 0; fills `sink` for the archive writer.  Refuses when an
 * output name is taken.  Release with exp_out_release even on failure. */
int exp_out_open(struct exp_out **out, const char *path, uint64_t split,
		 struct arc_sink *sink, struct ferr *e);
/* Everything written: sync and put in place (parts: the signed list
 * last).  *bytes is the bundle's size. */
int exp_out_publish(struct exp_out *o, const struct sig_key *key,
		    uint64_t *bytes, struct ferr *e);
size_t exp_out_parts(const struct exp_out *o);
/* Removes whatever was not published. */
void exp_out_release(struct exp_out *o);

#endif
