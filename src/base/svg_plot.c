/* svg_plot.c - see svg_plot.h. Layout: a fixed 880x520 panel per chart (stacked
 * vertically), plot area with margins for tick labels, the legend to the right.
 * Ticks use the 1-2-5 rule. */
#include "svg_plot.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define W 880.0
#define H 520.0
#define ML 70.0  /* left margin */
#define MR 200.0 /* right margin (legend) */
#define MT 50.0
#define MB 60.0

static const char *const palette[] = {"#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"};

static void xml_text(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&apos;", f); break;
        default:
            if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, f);
        }
    }
}

/* Tick step for a range using 1, 2, 5 x 10^n, about `want` ticks. */
static double nice_step(double range, int want)
{
    double raw = range / want, mag = pow(10, floor(log10(raw))), r = raw / mag;
    double m = r < 1.5 ? 1 : r < 3.5 ? 2 : r < 7.5 ? 5 : 10;
    return m * mag;
}

static void fmt_num(char *buf, size_t n, double v, double step)
{
    int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
    if (dec > 6) dec = 6;
    snprintf(buf, n, "%.*f", dec, v);
}

/* Axis ranges of one panel, from its data (or its fixed y range). */
typedef struct panel_geo {
    double x0, x1, xs, y0, y1, ys;
} panel_geo;

static int panel_range(const char *path, const ms_plot *p, panel_geo *g, ms_err *err)
{
    double xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
    int points = 0;
    for (int s = 0; s < p->n_series; s++)
        for (int i = 0; i < p->series[s].n; i++) {
            double x = p->series[s].x[i], y = p->series[s].y[i];
            if (!isfinite(x) || !isfinite(y))
                return ms_errf(err, EINVAL, "%s: plot: series '%s' has a non-finite point", path, p->series[s].name);
            xmin = fmin(xmin, x);
            xmax = fmax(xmax, x);
            ymin = fmin(ymin, y);
            ymax = fmax(ymax, y);
            points++;
        }
    if (!points) return ms_errf(err, EINVAL, "%s: plot: no data", path);
    if (p->ymin < p->ymax) {
        ymin = p->ymin;
        ymax = p->ymax;
    }
    if (xmax - xmin <= 0) {
        xmin -= 1;
        xmax += 1;
    }
    if (ymax - ymin <= 0) {
        ymin -= 0.5;
        ymax += 0.5;
    }
    g->xs = nice_step(xmax - xmin, 8);
    g->ys = nice_step(ymax - ymin, 6);
    g->x0 = floor(xmin / g->xs) * g->xs;
    g->x1 = ceil(xmax / g->xs) * g->xs;
    g->y0 = floor(ymin / g->ys + 1e-9) * g->ys;
    g->y1 = ceil(ymax / g->ys - 1e-9) * g->ys;
    return 0;
}

/* One chart with its top edge at oy. */
static void panel_write(FILE *f, const ms_plot *p, const panel_geo *g, double oy)
{
    double x0 = g->x0, x1 = g->x1, xs = g->xs, y0 = g->y0, y1 = g->y1, ys = g->ys;
    double pw = W - ML - MR, ph = H - MT - MB, mt = oy + MT;
#define PX(x) (ML + ((x) - x0) / (x1 - x0) * pw)
#define PY(y) (mt + ph - ((y) - y0) / (y1 - y0) * ph)
    if (p->title) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\" font-size=\"16\">", ML + pw / 2, oy + 28);
        xml_text(f, p->title);
        fputs("</text>\n", f);
    }
    /* grid + ticks */
    fputs("<g stroke=\"#dddddd\" stroke-width=\"1\">\n", f);
    for (double x = x0; x <= x1 + xs * 1e-6; x += xs)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", PX(x), mt, PX(x), mt + ph);
    for (double y = y0; y <= y1 + ys * 1e-6; y += ys)
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\"/>\n", ML, PY(y), ML + pw, PY(y));
    fputs("</g>\n", f);
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"none\" stroke=\"black\"/>\n", ML, mt,
            pw, ph);
    char buf[64];
    fputs("<g text-anchor=\"middle\">\n", f);
    for (double x = x0; x <= x1 + xs * 1e-6; x += xs) {
        fmt_num(buf, sizeof buf, x, xs);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", PX(x), mt + ph + 18, buf);
    }
    fputs("</g>\n<g text-anchor=\"end\">\n", f);
    for (double y = y0; y <= y1 + ys * 1e-6; y += ys) {
        fmt_num(buf, sizeof buf, y, ys);
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">%s</text>\n", ML - 6, PY(y) + 4, buf);
    }
    fputs("</g>\n", f);
    if (p->xlabel) {
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"middle\">", ML + pw / 2, oy + H - 15);
        xml_text(f, p->xlabel);
        fputs("</text>\n", f);
    }
    if (p->ylabel) {
        fprintf(f, "<text x=\"18\" y=\"%.1f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.1f)\">", mt + ph / 2,
                mt + ph / 2);
        xml_text(f, p->ylabel);
        fputs("</text>\n", f);
    }
    /* series */
    for (int s = 0; s < p->n_series; s++) {
        const ms_plot_series *se = &p->series[s];
        const char *col = palette[s % (int)(sizeof palette / sizeof palette[0])];
        fprintf(f, "<g class=\"series\" stroke=\"%s\" fill=\"%s\">\n<title>", col, col);
        xml_text(f, se->name);
        fprintf(f, "</title>\n<polyline fill=\"none\" stroke-width=\"%s\"%s points=\"", se->emphasize ? "3" : "1.5",
                se->dashed ? " stroke-dasharray=\"6 4\"" : "");
        for (int i = 0; i < se->n; i++) fprintf(f, "%s%.1f,%.1f", i ? " " : "", PX(se->x[i]), PY(se->y[i]));
        fputs("\"/>\n", f);
        for (int i = 0; i < se->n; i++)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\"/>\n", PX(se->x[i]), PY(se->y[i]));
        fputs("</g>\n", f);
        /* legend entry */
        double ly = mt + 10 + s * 20;
        fprintf(f, "<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\" stroke-width=\"%s\"%s/>\n",
                ML + pw + 15, ly, ML + pw + 45, ly, col, se->emphasize ? "3" : "1.5",
                se->dashed ? " stroke-dasharray=\"6 4\"" : "");
        fprintf(f, "<text x=\"%.1f\" y=\"%.1f\">", ML + pw + 52, ly + 4);
        xml_text(f, se->name);
        fputs("</text>\n", f);
    }
#undef PX
#undef PY
}

int ms_svg_plot_write_panels(const char *path, const ms_plot *panels, int n, ms_err *err)
{
    panel_geo g[MS_PLOT_MAX_PANELS];
    if (n < 1 || n > MS_PLOT_MAX_PANELS) return ms_errf(err, EINVAL, "%s: plot: %d panels (1..%d)", path, n, MS_PLOT_MAX_PANELS);
    for (int i = 0; i < n; i++) {
        int rc = panel_range(path, &panels[i], &g[i], err);
        if (rc < 0) return rc;
    }
    FILE *f = fopen(path, "w");
    if (!f) return ms_errf(err, errno, "%s: cannot create: %s", path, strerror(errno));
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" height=\"%.0f\" "
               "viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" font-size=\"12\">\n",
            W, H * n, W, H * n);
    fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"white\"/>\n", W, H * n);
    for (int i = 0; i < n; i++) panel_write(f, &panels[i], &g[i], H * i);
    fputs("</svg>\n", f);
    if (ferror(f) | (fclose(f) != 0)) return ms_errf(err, EIO, "%s: write failed", path);
    return 0;
}

int ms_svg_plot_write(const char *path, const ms_plot *p, ms_err *err) { return ms_svg_plot_write_panels(path, p, 1, err); }
