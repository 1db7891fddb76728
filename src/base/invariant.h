/* invariant.h - internal consistency checks in the style of SQLite's assert():
 * MS_INVARIANT(cond) aborts with the condition, file and line when the data
 * structures disagree with themselves (a bug, never bad input: bad input gets
 * an error return). Compiled in when MS_INVARIANTS is defined - the sanitizer
 * and non-Release builds, where the test suite runs them - and free otherwise. */
#ifndef MS_INVARIANT_H
#define MS_INVARIANT_H

#include <stdio.h>
#include <stdlib.h>

#ifdef MS_INVARIANTS
#define MS_INVARIANTS_ON 1
#define MS_INVARIANT(cond)                                                                              \
    ((cond) ? (void)0                                                                                   \
            : (fprintf(stderr, "moestream: invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__), \
               abort()))
#else
#define MS_INVARIANTS_ON 0
#define MS_INVARIANT(cond) ((void)0)
#endif

#endif
