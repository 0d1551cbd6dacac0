/* The Gemma 4 output parser: one streaming state machine that splits the
 * model's generated text (special tokens present as their text, e.g.
 * "<|channel>") into content, reasoning and OpenAI tool calls.
 *
 * Text may arrive in arbitrary chunks (multi-token deltas, bytes split inside
 * a UTF-8 character); the deltas produced are the same in total however the
 * text is split. Text that could still turn out to be a delimiter is held
 * back until it is decided, so nothing emitted is ever retracted.
 *
 * Grammar (serving.md §4, model.md §4.2):
 *   reasoning   <|channel>thought\n ... <channel|>     (the "thought\n" label is dropped)
 *   tool calls  <|tool_call>call:NAME{k:v,...}<tool_call|>, several calls may
 *               follow each other in one block or in back-to-back blocks.
 *   arguments   bare keys, <|"|>strings<|"|>, bare numbers/true/false/null,
 *               nested {} and []; converted to JSON as they stream.
 * Malformed forms accepted: "call:NAME{" with no <|tool_call> after <channel|>,
 * at the start of the output or at the start of a line (only when tools are
 * enabled); "<|tool_call>:NAME{" and "<|tool_call>NAME{"; round brackets
 * "call:NAME(k:v)" and "k=v"; a stray <channel|>, <|channel> or <tool_call|>
 * (swallowed); <|tool_call> or a bare call inside reasoning (ends the
 * reasoning); JSON-style "quoted" keys and strings; None/nil/True/False.
 * <turn|>, <|turn>, <eos>, <|tool_response>, <tool_response|> are dropped
 * wherever they appear (parsing carries on after them). <|"|> never reaches
 * the client: outside tool arguments it becomes a plain '"'.
 *
 * Whitespace in content and reasoning is held until more text of the same
 * kind follows, so whitespace right before a tool call, a channel switch or
 * the end of the output is dropped; so is whitespace before the first
 * content and before the first reasoning ("<channel|>\n\nHi" gives "Hi").
 *
 * End of output (outp_finish, also on truncation at max_tokens): a call whose
 * arguments had begun ("call:NAME{" seen) is always completed: an open string
 * is closed, a pending bare value is kept, a key with no value is dropped and
 * the open objects/arrays are closed, so its arguments are valid JSON. A call
 * cut before its '{' (only "call:NAM" seen) has no arguments to complete: its
 * text goes out as content and no tool call is emitted.
 *
 * With tools_enabled off, the bare "call:" heuristics are off, but an explicit
 * <|tool_call> block is still parsed into tool-call deltas; the server decides
 * what to do with calls nobody asked for. */
#ifndef G4_TEXT_OUTPUT_PARSER_H
#define G4_TEXT_OUTPUT_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    /* The prompt enabled thinking (system turn has <|think|>). Then output
     * starting with "thought\n" but no <|channel> is taken as reasoning.
     * With thinking off the prompt ended in a closed empty channel, so the
     * start of the output counts as "right after <channel|>"; a channel the
     * model opens anyway is still parsed as reasoning. */
    bool enable_thinking;
    bool tools_enabled;  /* the request carries tools: allow bare "call:" */
    bool in_reasoning;   /* the prompt ends inside an open <|channel> (a template
                          * variant opens one after a tool response): the
                          * output starts as reasoning */
    uint64_t id_seed;    /* seed for tool-call ids; 0 = from the OS */
} outp_opts;

typedef enum {
    OUTP_CONTENT,    /* text: answer text */
    OUTP_REASONING,  /* text: thought text */
    OUTP_TOOL_START, /* index, id, name: a new call; its arguments follow */
    OUTP_TOOL_ARGS,  /* index, text: next fragment of the call's JSON arguments */
} outp_kind;

typedef struct {
    outp_kind kind;
    int index;   /* tool-call index 0, 1, ... for OUTP_TOOL_*; -1 otherwise */
    char *text;  /* NUL-terminated, valid UTF-8 if the input is; NULL for TOOL_START */
    size_t len;  /* bytes in text */
    size_t cap;  /* (internal) bytes allocated for text */
    char *name;  /* OUTP_TOOL_START: the function name; NULL otherwise */
    char id[32]; /* OUTP_TOOL_START: "call_" + 24 random base62 characters */
} outp_delta;

/* A list of deltas in output order; consecutive deltas of the same kind and
 * index are merged. The list owns the strings. Zero-initialise it. */
typedef struct {
    outp_delta *v;
    size_t n, cap;
} outp_deltas;

void outp_deltas_clear(outp_deltas *d); /* frees the strings, keeps the array */
void outp_deltas_free(outp_deltas *d);  /* frees everything; d is empty after */

typedef struct outp outp;

/* Returns NULL when out of memory. */
outp *outp_create(const outp_opts *opts);
void outp_free(outp *p);

/* Feeds the next len bytes of generated text and appends the deltas it
 * decides to out (out is not cleared first). Returns 0, or -1 when out of
 * memory (the parser is then unusable). */
int outp_feed(outp *p, const char *text, size_t len, outp_deltas *out);

/* End of generation (stop token, stop string or max_tokens): decides the
 * held-back text and completes an open tool call (see above). Call once;
 * returns 0 or -1 when out of memory. */
int outp_finish(outp *p, outp_deltas *out);

/* Tool calls started so far (finish_reason "tool_calls" when > 0). */
int outp_num_tool_calls(const outp *p);

#endif
