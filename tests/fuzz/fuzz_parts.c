/* Split-volume lists (common/parts.c): any text either parses or is
 * refused with a message; a parsed list names base.001, base.002, ... in
 * order, and its text parses again to the same list.  The split-size
 * parser takes the same input as a string. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "parts.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct parts_list l, again;
	struct ferr e = {0};
	char *s = malloc(size + 1), *text;
	uint64_t v;

	if (!s)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	(void)parts_size_parse(s, &v);
	if (parts_list_parse((const char *)data, size, "b.tar.zst", &l, &e) <
	    0) {
		if (!e.msg[0] || l.n || l.names)
			abort(); /* a refusal says why and leaves l empty */
		free(s);
		return 0;
	}
	for (size_t i = 0; i < l.n; i++) {
		char want[32];
		snprintf(want, sizeof(want), "b.tar.zst.%03zu", i + 1);
		if (strcmp(l.names[i], want) != 0)
			abort();
	}
	text = parts_list_text(&l);
	if (!text ||
	    parts_list_parse(text, strlen(text), "b.tar.zst", &again, &e) < 0 ||
	    again.n != l.n)
		abort();
	for (size_t i = 0; i < l.n; i++)
		if (!digest_equal(&l.sums[i], &again.sums[i]))
			abort();
	parts_list_release(&l);
	parts_list_release(&again);
	free(text);
	free(s);
	return 0;
}
