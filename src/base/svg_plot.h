/* svg_plot.h - a small self-contained SVG line chart writer (no dependencies):
 * axes with "nice" ticks and labels, a grid, one polyline (plus point markers)
 * per series, and a legend; several charts may be stacked in one file. Used by
 * `simulate --plot` for hit rate and reads against the minimum per policy. The
 * output is standalone SVG 1.1 that browsers render. */
#ifndef MS_SVG_PLOT_H
#define MS_SVG_PLOT_H

#include <stdbool.h>

#include "err.h"

typedef struct ms_plot_series {
    const char *name;  /* legend text (XML-escaped on output) */
    int n;             /* points */
    const double *x, *y;
    bool emphasize;    /* drawn thicker (e.g. the default policy) */
    bool dashed;       /* e.g. an offline bound */
} ms_plot_series;

typedef struct ms_plot {
    const char *title, *xlabel, *ylabel;
    double ymin, ymax;  /* y range; if ymin >= ymax it is taken from the data */
    int n_series;
    const ms_plot_series *series;
} ms_plot;

/* Write the chart to path. -EINVAL on no data / non-finite values. */
int ms_svg_plot_write(const char *path, const ms_plot *p, ms_err *err);

/* Several charts stacked vertically in one file (e.g. hit rate, then reads
 * against the minimum), each with its own axes and legend. */
#define MS_PLOT_MAX_PANELS 4
int ms_svg_plot_write_panels(const char *path, const ms_plot *panels, int n, ms_err *err);

#endif
