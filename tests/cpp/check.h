// The CHECK macro of the C++ unit tests: counts failures instead of aborting, so one run
// reports every broken check.
#pragma once

#include <cstdio>

extern int g_failures;

#define CHECK(cond)                                                                  \
  do {                                                                               \
    if (!(cond)) {                                                                   \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      ++g_failures;                                                                  \
    }                                                                                \
  } while (0)
