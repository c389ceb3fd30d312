/* Symbol visibility for the C ABI library (libcellrt_c). */
#ifndef CELLRT_EXPORT_H_
#define CELLRT_EXPORT_H_

#if defined(_WIN32)
#if defined(CELLRT_C_BUILDING)
#define CELLRT_EXPORT __declspec(dllexport)
#else
#define CELLRT_EXPORT __declspec(dllimport)
#endif
#else
#define CELLRT_EXPORT __attribute__((visibility("default")))
#endif

#endif /* CELLRT_EXPORT_H_ */
