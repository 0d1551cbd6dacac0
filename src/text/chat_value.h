/* How the Gemma 4 chat template sees JSON values: the request is parsed with
 * json.loads and rendered by Jinja2, so truthiness, str(), `| upper`,
 * `| trim`, `| dictsort` and == follow Python rules. These helpers reproduce
 * those rules over jansson values.
 *
 * Convention: a NULL json_t pointer stands for Jinja's Undefined (a key that
 * is not there); a JSON null is Python's None. They differ: {{ undefined }}
 * prints "", {{ none }} prints "None". */
#ifndef G4_TEXT_CHAT_VALUE_H
#define G4_TEXT_CHAT_VALUE_H

#include <jansson.h>
#include <stddef.h>

#include "util/err.h"
#include "util/strbuf.h"

/* Python bool(v); Undefined is false. */
int cv_truthy(const json_t *v);

/* obj[key] for a dict, else Undefined (NULL): what Jinja's getitem gives for
 * every key the template reads (none of them is also an attribute that
 * matters; see chat_template.c on value['items']). */
json_t *cv_get(const json_t *obj, const char *key);

/* Appends str(v) the way {{ v }} prints it: strings raw, None/True/False,
 * ints, floats as Python repr, lists and dicts as Python repr. */
void cv_str(strbuf *out, const json_t *v);

/* Appends str(v).upper() (the `upper` filter). Case mapping covers ASCII,
 * Latin-1, Latin Extended-A, basic Greek and Cyrillic. */
void cv_upper(strbuf *out, const json_t *v);

/* Python str.strip() with no argument: the span of s[0..n) left after
 * removing Unicode whitespace at both ends. */
void cv_strip(const char *s, size_t n, size_t *off, size_t *len);

/* Keys of obj in `| dictsort` order (case-insensitive, stable). Returns a
 * malloc'd array of borrowed key pointers (free() it), or NULL for an empty
 * or non-dict obj or on allocation failure (*n = 0). */
const char **cv_sorted_keys(const json_t *obj, size_t *n);

/* The template's format_argument macro: null, <|"|>strings<|"|>, true/false,
 * {k:v,...} in dictsort order (keys wrapped in <|"|> when escape_keys),
 * [a,b], and str() for numbers. */
void cv_format_argument(strbuf *out, const json_t *v, int escape_keys);

/* Python a == b; Undefined compares as None (the template only compares
 * values obtained with dict.get). */
int cv_equal(const json_t *a, const json_t *b);

/* `for item in v` emitting <|"|>str(item)<|"|> separated by commas: lists by
 * element, strings by character, dicts by key. Other values are not
 * iterable in Python: returns -1 with a message naming `what`. */
int cv_quoted_items(strbuf *out, const json_t *v, const char *what, g4_err *err);

#endif
