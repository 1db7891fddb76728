/* bench.h - benchmark entry points behind `moestream bench <what>`. Each takes the
 * argv after "bench" (argv[0] = "kernels" / "io" / "decode" / "prefill" / "serve" / "template") and returns the exit
 * code. Benchmarks print figures; they never pass or fail on time. */
#ifndef MS_BENCH_H
#define MS_BENCH_H

int ms_bench_kernels(int argc, char **argv);
int ms_bench_io(int argc, char **argv);
int ms_bench_decode(int argc, char **argv);
int ms_bench_prefill(int argc, char **argv);
int ms_bench_serve(int argc, char **argv);
int ms_bench_template(int argc, char **argv);

/* The I/O workload of a model: every range of every routed expert, from the
 * expert table (arrays malloc'd; free with ms_bench_model_workload_free). */
struct ms_model;
struct ms_bench_io_workload;
int ms_bench_model_workload(const struct ms_model *m, struct ms_bench_io_workload *w);
void ms_bench_model_workload_free(struct ms_bench_io_workload *w);
/* The device's read GB/s: a raw O_DIRECT read of up to 1 GiB of the model's expert
 * bytes (global page cache dropped first); 0 if it cannot be measured. */
double ms_bench_device_gbps(const struct ms_model *m);
/* Cold start: drop the model's own pages from the page cache (clean pages of files
 * nobody maps go at once). Not the global drop_caches, which would also empty other
 * processes' caches on a shared machine. */
void ms_bench_drop_model_cache(const struct ms_model *m);

#endif
