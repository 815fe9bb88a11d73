#ifndef HEAP_STATISTICS_H
#define HEAP_STATISTICS_H

#include <stddef.h>

/// Bytes allocated by malloc and not yet freed, or 0 where the C library cannot tell.
size_t heap_allocated_bytes(void);

#endif
