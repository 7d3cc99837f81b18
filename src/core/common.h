/* common: the return-code vocabulary shared by every module. */
#ifndef GH_CORE_COMMON_H
#define GH_CORE_COMMON_H

#define GH_OK    0
#define GH_ERROR (-1)
#define GH_AGAIN (-2) /* nonblocking: nothing can be done now, wait for readiness */

#define GH_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define GH_MIN(a, b)    ((a) < (b) ? (a) : (b))

#endif
