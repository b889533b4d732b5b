/* Image references (common/ref.c): any text either parses or is refused
 * with a message, and a parsed reference's normalised form parses again
 * to itself. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ref r, again;
	struct ferr e = {0};
	char *s = malloc(size + 1), *full, *name, *full2;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if (ref_parse(&r, s, &e) < 0) {
		if (!e.msg[0] || r.domain || r.path)
			abort(); /* a refusal says why and leaves r empty */
		free(s);
		return 0;
	}
	full = ref_string(&r);
	name = ref_name(&r);
	if (!full || !name || !ref_api_host(&r) || !ref_object(&r))
		abort();
	if (ref_parse(&again, full, &e) < 0) {
		fprintf(stderr, "'%s' -> '%s' does not parse again: %s\n", s,
			full, e.msg);
		abort();
	}
	full2 = ref_string(&again);
	if (!full2 || strcmp(full, full2) != 0) {
		fprintf(stderr, "'%s' -> '%s' -> '%s'\n", s, full,
			full2 ? full2 : "(null)");
		abort();
	}
	free(full2);
	ref_release(&again);
	free(full);
	free(name);
	ref_release(&r);
	free(s);
	return 0;
}
