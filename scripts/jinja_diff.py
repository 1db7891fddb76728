#!/usr/bin/env python3
"""jinja_diff.py - differential test of the Jinja renderer against jinja2.

Generates random templates (statements, whitespace control, expressions, filters,
tests, methods, macros, namespaces, loop controls) and renders each with jinja2
configured as transformers configures it (ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, transformers' tojson / raise_exception / strftime_now)
and with `moestream template`; prints every case whose output differs (an error on
both sides counts as agreement). Needs python3 with jinja2 (3.1).

    usage: scripts/jinja_diff.py [--bin build/moestream] [--seed S] [-n N] [--ws]
      --ws   whitespace-heavy templates (lexer: trim/lstrip, -/+ markers, raw, CRLF)
Outputs that print object addresses (generators, methods) are skipped: they differ
between any two Python runs too. Exit status 1 if anything differed.
"""
import argparse
import copy
import json
import os
import random
import subprocess
import sys
import tempfile
from datetime import datetime

import jinja2
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment


class Generation(Extension):
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_gen"), [], [], body).set_lineno(lineno)

    def _gen(self, caller):
        return caller()


def raise_exception(msg):
    raise jinja2.exceptions.TemplateError(msg)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


ENV = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                    extensions=[Generation, jinja2.ext.loopcontrols])
ENV.filters["tojson"] = tojson
ENV.globals["raise_exception"] = raise_exception
ENV.globals["strftime_now"] = lambda fmt: datetime(2026, 1, 15, 10, 30, 0).strftime(fmt)

VARS = {
    'x': [1, 'a', None, True, 2.5], 'd': {'a': 1, 'b': [1, 2], 'c': {'e': 'f'}, 'role': 'user'},
    's': 'Hello, World! héllo', 'n': None, 'i': 7, 'f': -3.25, 'e': [], 'ed': {}, 'b': False, 't': 'a\nb  c\n',
    'msgs': [{'role': 'system', 'content': 'sys'}, {'role': 'user', 'content': 'hi <b>'},
             {'role': 'assistant', 'content': None,
              'tool_calls': [{'function': {'name': 'f', 'arguments': {'a': 1}}}]},
             {'role': 'tool', 'content': '{"r": 1}'}],
}
NAMES = list(VARS) + ['u', 'loop', 'ns', 'm']
ATTRS = ['a', 'b', 'c', 'role', 'content', 'items', 'keys', 'get', 'upper', 'split', 'strip', 'index', 'length',
         'first', 'last', 'index0', 'e', 'tool_calls', 'function', 'name', 'arguments', 'append']
FILTERS = [('length', []), ('count', []), ('string', []), ('list', []), ('first', []), ('last', []), ('upper', []),
           ('lower', []), ('trim', []), ('title', []), ('capitalize', []), ('tojson', []), ('tojson', ['indent=2']),
           ('tojson', ['ensure_ascii=true']), ('join', ["', '"]), ('join', []), ('default', ["'D'"]),
           ('default', ["'D'", 'true']), ('items', []), ('dictsort', []), ('sort', []), ('unique', []),
           ('reverse', []), ('safe', []), ('escape', []), ('int', []), ('float', []), ('abs', []), ('round', []),
           ('replace', ["'a'", "'X'"]), ('select', []), ('reject', []), ('select', ["'string'"]),
           ('map', ["'string'"]), ('map', ["attribute='role'"]), ('selectattr', ["'role'"]),
           ('rejectattr', ["'role'", "'equalto'", "'user'"]), ('sum', []), ('max', []), ('min', []),
           ('batch', ['2']), ('indent', ['2']), ('center', ['7']), ('wordcount', []), ('pprint', []),
           ('truncate', ['5']), ('format', ['1']), ('striptags', []), ('trim', ["'x'"]), ('groupby', ["'role'"])]
TESTS = ['defined', 'undefined', 'none', 'string', 'mapping', 'iterable', 'sequence', 'number', 'integer', 'float',
         'boolean', 'true', 'false', 'odd', 'even', 'divisibleby 2', 'eq 1', 'ne 1', 'in x', 'sameas none',
         'callable', 'lower', 'upper', 'escaped']
METHODS = ["split()", "split(',')", "strip()", "lstrip('H')", "upper()", "startswith('H')", "endswith('o')",
           "get('a')", "get('zz', 0)", "items()", "keys()", "values()", "replace('l', 'L')", "find('o')",
           "count('l')", "index(1)", "title()", "join(['a','b'])", "format(1)", "splitlines()", "partition(',')"]


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)

    def lit(self):
        r = self.r
        k = r.randrange(9)
        if k == 0:
            return str(r.randrange(-3, 11))
        if k == 1:
            return r.choice(['1.5', '0.1', '2.0', '1e3', '-0.0', '1e-7', '10.0'])
        if k == 2:
            return repr(r.choice(['', 'a', 'ab c', 'x\ny', "it's", 'é中', ' pad ', 'a,b', '<&>', '\t']))
        if k == 3:
            return r.choice(['none', 'None', 'true', 'false', 'True'])
        if k == 4:
            return '[' + ', '.join(self.expr(1) for _ in range(r.randrange(3))) + ']'
        if k == 5:
            return '{' + ', '.join('%r: %s' % (r.choice(['a', 'b', 'role']), self.expr(1))
                                   for _ in range(r.randrange(3))) + '}'
        if k == 6:
            return '(' + ', '.join(self.expr(1) for _ in range(r.randrange(3))) + (',)' if r.random() < .3 else ')')
        return r.choice(NAMES)

    def expr(self, depth=3):
        r = self.r
        if depth <= 0:
            return self.lit()
        e = lambda: self.expr(depth - 1)  # noqa: E731
        k = r.randrange(14)
        if k == 0:
            return '%s %s %s' % (e(), r.choice(['+', '-', '*', '/', '//', '%', '~', '**']), e())
        if k == 1:
            return '%s %s %s' % (e(), r.choice(['==', '!=', '<', '>', '<=', '>=', 'in', 'not in']), e())
        if k == 2:
            return '%s %s %s' % (e(), r.choice(['and', 'or']), e())
        if k == 3:
            return 'not ' + e()
        if k == 4:
            return '%s is %s%s' % (e(), r.choice(['', 'not ']), r.choice(TESTS))
        if k == 5:
            return '%s if %s else %s' % (e(), e(), e()) if r.random() < .8 else '%s if %s' % (e(), e())
        if k == 6:
            return '%s.%s' % (r.choice(NAMES), r.choice(ATTRS))
        if k == 7:
            return '%s[%s]' % (r.choice(NAMES), r.choice(['0', '-1', "'a'", "'role'", '1:', '::-1', ':2', 'i']))
        if k == 8:
            f, a = r.choice(FILTERS)
            return '%s | %s%s' % (self.lit() if r.random() < .5 else r.choice(NAMES), f,
                                  '(' + ', '.join(a) + ')' if a else '')
        if k == 9:
            return '%s.%s' % (r.choice(['s', 'd', 'x', 't', "'a b'", 'msgs[0]', 'd.c']), r.choice(METHODS))
        if k == 10:
            return '(%s)' % e()
        if k == 11:
            return '-%s' % self.lit()
        return self.lit()

    def ws(self):
        return self.r.choice(['', ' ', '\n', '  \n  ', '\n\n', '\t'])

    def tag(self, body):
        r = self.r
        return '{%' + r.choice(['', '-', '+']) + ' ' + body + ' ' + r.choice(['', '-', '+']) + '%}'

    def stmts(self, depth=2):
        r = self.r
        parts = []
        for _ in range(r.randrange(1, 4)):
            k = r.randrange(10) if depth > 0 else r.randrange(3)
            parts.append(self.ws())
            if k == 0:
                parts.append(r.choice(['text', 'a b', '  x', 'line\n']))
            elif k == 1:
                parts.append('{{' + r.choice(['', '-']) + ' ' + self.expr() + ' ' + r.choice(['', '-']) + '}}')
            elif k == 2:
                parts.append(self.tag('set %s = %s' % (r.choice(['y', 'z', 'x', 'ns.a']), self.expr())))
            elif k == 3:
                parts.append(self.tag('if ' + self.expr()) + self.stmts(depth - 1))
                if r.random() < .4:
                    parts.append(self.tag('elif ' + self.expr()) + self.stmts(depth - 1))
                if r.random() < .5:
                    parts.append(self.tag('else') + self.stmts(depth - 1))
                parts.append(self.tag('endif'))
            elif k == 4:
                tgt = r.choice(['v', 'k, v', 'm'])
                it = r.choice(['x', 'd', 'd.items()', 'msgs', 's', 'e', 'range(3)', 'x|reverse', 'u', 'd|items',
                               'msgs|selectattr("role", "equalto", "user")', 't.split()'])
                cond = ' if ' + self.expr(1) if r.random() < .2 else ''
                parts.append(self.tag('for %s in %s%s' % (tgt, it, cond)) + self.ws() +
                             r.choice(['{{ loop.index }}', '{{ loop.first }}{{ loop.last }}', '{{ v }}', '']) +
                             self.stmts(depth - 1))
                if r.random() < .2:
                    parts.append(self.tag(r.choice(['break', 'continue'])))
                if r.random() < .3:
                    parts.append(self.tag('else') + self.stmts(depth - 1))
                parts.append(self.tag('endfor'))
            elif k == 5:
                parts.append(self.tag('set ns = namespace(a=%s)' % self.expr(1)))
            elif k == 6:
                parts.append(self.tag('macro mm(p, q=%s)' % self.lit()) + self.stmts(depth - 1) + '{{ p }}{{ q }}' +
                             self.tag('endmacro') + self.ws() + '{{ mm(%s) }}' % self.expr(1))
            elif k == 7:
                parts.append('{# c ' + r.choice(['', '-', 'x']) + ' #}')
            elif k == 8:
                parts.append(self.tag('set blk') + self.stmts(depth - 1) + self.tag('endset') + '[{{ blk }}]')
            else:
                parts.append(r.choice(['{% raw %}{{ x }}{% endraw %}', '{{ "%s" % x }}', '{{ "{}-{}".format(i, s) }}']))
        parts.append(self.ws())
        return ''.join(parts)

    def whitespace_template(self):
        r = self.r
        pieces = ['a', ' ', '  ', '\t', '\n', '\r\n', '\r', 'x y', '\u3000', '\xa0', '{{ 1 }}', '{{- 2 }}', '{{ 3 -}}',
                  '{{+ 5 }}', '{% if true %}', '{%- if true %}', '{% if true -%}', '{%+ if true %}',
                  '{% if true +%}', '{% endif %}', '{%- endif -%}', '{%+ endif +%}', '{# c #}', '{#- c #}',
                  '{# c -#}', '{# c +#}', '{% raw %}r{{ z }}{% endraw %}', '{%- raw -%} r {%- endraw -%}',
                  '{% set v = 1 %}', '{%- set v = 2 -%}', 'b\n  ', '\n    ']
        parts, depth = [], 0
        for _ in range(r.randrange(2, 12)):
            p = r.choice(pieces)
            if 'endif' in p:
                if depth == 0:
                    continue
                depth -= 1
            elif 'if true' in p:
                depth += 1
            parts.append(p)
        t = ''.join(parts) + '{% endif %}' * depth
        return t + r.choice(['', '', '\n', '\r\n', '\n\n'])


def reference(template, variables):
    try:
        return 'o', ENV.from_string(template).render(**copy.deepcopy(variables))
    except Exception as e:  # noqa: BLE001 - any error of the reference is "an error"
        return 'e', '%s: %s' % (type(e).__name__, e)


def ours(binary, template, variables, tmp):
    tp, ip = os.path.join(tmp, 't.jinja'), os.path.join(tmp, 'in.json')
    with open(tp, 'w', encoding='utf-8', newline='') as f:
        f.write(template)
    with open(ip, 'w', encoding='utf-8') as f:
        json.dump({'messages': [], 'kwargs': variables}, f)
    r = subprocess.run([binary, 'template', '--chat-template', tp, '--input', ip, '--now', '2026-01-15T10:30:00'],
                       capture_output=True)
    if r.returncode == 0:
        return 'o', r.stdout.decode('utf-8')
    return 'e', r.stderr.decode('utf-8', 'replace').strip()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--bin', default=os.path.join(os.path.dirname(__file__), '..', 'build', 'moestream'))
    ap.add_argument('--seed', type=int, default=1)
    ap.add_argument('-n', type=int, default=300)
    ap.add_argument('--ws', action='store_true')
    a = ap.parse_args()
    g = Gen(a.seed)
    bad = skipped = 0
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.n):
            t = g.whitespace_template() if a.ws else g.stmts(3) + ('\n' if g.r.random() < .3 else '')
            v = {} if a.ws else VARS
            ref = reference(t, v)
            if ' at 0x' in ref[1]:
                skipped += 1
                continue
            mine = ours(a.bin, t, v, tmp)
            if ref[0] != mine[0] or (ref[0] == 'o' and ref[1] != mine[1]):
                bad += 1
                print('MISMATCH %r\n  jinja2    %r\n  moestream %r' % (t, ref, mine))
    print('%d templates, %d differ, %d skipped (addresses in the output)' % (a.n, bad, skipped))
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
