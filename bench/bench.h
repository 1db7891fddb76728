/* bench.h - benchmark entry points behind `moestream bench <what>`. Each takes the
 * argv after "bench" (argv[0] = "kernels" / "io" / "decode") and returns the exit
 * code. Benchmarks print figures; they never pass or fail on time. */
#ifndef MS_BENCH_H
#define MS_BENCH_H

int ms_bench_kernels(int argc, char **argv);
int ms_bench_io(int argc, char **argv);
int ms_bench_decode(int argc, char **argv);

#endif
