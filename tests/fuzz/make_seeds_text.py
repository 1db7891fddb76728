#!/usr/bin/env python3
"""make_seeds_text.py - seed corpora and dictionaries of the text fuzz targets
(template, toolcall): the shared real chat templates (tests/data/templates), Jinja
snippets, and scripted completions of every tool-call format.
    usage: tests/fuzz/make_seeds_text.py   (writes tests/fuzz/corpus/{template,toolcall}, dict/*.dict)
"""
import json
import os

root = os.path.dirname(os.path.abspath(__file__))
data = os.path.join(root, '..', 'data', 'templates')

SNIPPETS = [
    "{{ x }}", "{% for m in messages %}{{ m.role }}{% endfor %}", "{%- if a -%} x {%- elif b %}y{% else %}z{% endif -%}",
    "{% set ns = namespace(a=0) %}{% for i in range(3) %}{% set ns.a = ns.a + i %}{% endfor %}{{ ns.a }}",
    "{% macro m(x, y=2) %}{{ x ~ y }}{{ caller() if caller is defined }}{% endmacro %}{% call m(1) %}c{% endcall %}",
    "{{ tools | tojson(indent=2) }}{{ messages | selectattr('role', 'equalto', 'user') | list | length }}",
    "{% for k, v in {'a': 1} | items %}{{ k }}={{ v }}{% endfor %}{{ 'a,b'.split(',') | join('|') }}",
    "{{ '%s-%d' % ('x', 3) }}{{ '{}:{:>4}'.format(1, 'y') }}{{ [1, 2][::-1] }}{{ (1,) }}{{ none }}",
    "{% raw %}{{ not }}{% endraw %}{# c #}  {%+ if true +%}\n x\n{% endif %}\r\n",
    "{% for a in [[1, [2]]] recursive %}{% if a is iterable %}{{ loop(a) }}{% else %}{{ a }}{% endif %}{% endfor %}",
    "{{ raise_exception('no') if x is undefined }}{{ strftime_now('%Y') }}{{ x | default('d') | upper }}",
    "{% filter upper %}{% with a = 1 %}{{ a }}{% endwith %}{% endfilter %}{% set b %}{{ 2 }}{% endset %}{{ b | int + 1 }}",
]

TOOLCALL = [  # (format index, starts in <think>, text)
    (0, False, 'Ok.<｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>f\n```json\n{"a": 1}\n```<｜tool▁call▁end｜><｜tool▁calls▁end｜>'),
    (0, True, 'thinking\n</think>\n\nAnswer'),
    (1, False, '<think>r</think><｜tool▁calls▁begin｜><｜tool▁call▁begin｜>f<｜tool▁sep｜>{"b": "x"}<｜tool▁call▁end｜><｜tool▁calls▁end｜>'),
    (2, False, 'Сейчас.<|function_call|>{"name": "f", "arguments": {"a": 2}}'),
    (3, False, 'Ok<|message_sep|>\n\nfunction call<|role_sep|>\n{"name": "f", "arguments": {}}'),
    (4, False, '<think>p</think>x<tool_call>f\n<arg_key>a</arg_key>\n<arg_value>3</arg_value>\n<arg_key>b</arg_key>\n<arg_value>s</arg_value>\n</tool_call>'),
    (5, True, 'r\n</think>\n\n<tool_call>\n<function=f>\n<parameter=a>\n4\n</parameter>\n<parameter=c>\ntrue\n</parameter>\n</function>\n</tool_call>'),
    (6, False, 'x\n<tool_call>\n{"name": "f", "arguments": {"a": 5}}\n</tool_call>\n<tool_call>{bad}</tool_call>'),
    (7, False, '<|tool_calls_section_begin|><|tool_call_begin|>functions.f:0<|tool_call_argument_begin|>{"a": 6}<|tool_call_end|><|tool_calls_section_end|>'),
    (8, False, '  plain <think>text</think> \n'),
]

JINJA_DICT = [
    "{%", "%}", "{{", "}}", "{#", "#}", "{%-", "-%}", "{{-", "-}}", "{%+", "+%}", "\n", "for ", " in ", "endfor", "if ",
    "elif ", "else", "endif", "set ", "endset", "macro ", "endmacro", "call", "endcall", "filter ", "endfilter", "with ",
    "endwith", "raw", "endraw", "break", "continue", "block ", "endblock", "generation", "endgeneration", "recursive",
    "namespace(", "ns.", "loop.index0", "loop.first", "loop.last", "loop(", "caller()", "varargs", "kwargs", "messages",
    "tools", "message.role", "message['content']", "tool_calls", "arguments", "bos_token", "add_generation_prompt",
    "raise_exception(", "strftime_now(", "range(", "dict(", "cycler(", "joiner(", "|tojson", "|tojson(indent=2)",
    "|length", "|items", "|join(', ')", "|selectattr('role', 'equalto', 'user')", "|map(attribute='name')", "|list",
    "|first", "|last", "|trim", "|default(", "|string", "|safe", "|reverse", "|sort", "|unique", "|batch(2)",
    "|indent(4)", "|truncate(5)", "|format(", "|replace(", "|int", "|float", "|round", "is defined", "is none",
    "is string", "is mapping", "is iterable", "is sequence", "is not ", "not ", "and", "or", "~", "**", "//", "%",
    "[::-1]", "[1:]", ".split(", ".strip()", ".startswith(", ".get(", ".items()", ".format(", "'%s' % ", "true", "false",
    "none", "None", "True", "1e3", "0x1f", "'\\u00e9'",
]

TOOL_DICT = [
    "<think>", "</think>", "<tool_call>", "</tool_call>", "<function=", "</function>", "<parameter=", "</parameter>",
    "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>", "<｜tool▁calls▁begin｜>", "<｜tool▁calls▁end｜>",
    "<｜tool▁call▁begin｜>", "<｜tool▁call▁end｜>", "<｜tool▁sep｜>", "```json", "```", "<|function_call|>",
    "<|message_sep|>", "function call<|role_sep|>", "<|tool_calls_section_begin|>", "<|tool_calls_section_end|>",
    "<|tool_call_begin|>", "<|tool_call_end|>", "<|tool_call_argument_begin|>", "functions.", "{\"name\": ",
    "\"arguments\": ", "{", "}", "[", "]", ":", ",", "\"", "\\\"", "null", "true", "1e999",
]


def write_dict(path, words):
    """libFuzzer's format: printable ASCII as is, \\ and \" escaped, other bytes as \\xNN"""
    with open(path, 'w', encoding='ascii') as f:
        for w in words:
            out = ''
            for b in w.encode('utf-8'):
                c = chr(b)
                out += '\\' + c if c in '\\"' else c if 0x20 <= b < 0x7f else '\\x%02X' % b
            f.write('"' + out + '"\n')


def main():
    tdir = os.path.join(root, 'corpus', 'template')
    cdir = os.path.join(root, 'corpus', 'toolcall')
    os.makedirs(tdir, exist_ok=True)
    os.makedirs(cdir, exist_ok=True)
    for f in sorted(os.listdir(data)):
        if f.endswith('.jinja'):
            with open(os.path.join(data, f), 'rb') as src, open(os.path.join(tdir, f[:-6]), 'wb') as dst:
                dst.write(src.read())
    for i, s in enumerate(SNIPPETS):
        with open(os.path.join(tdir, 'snippet%02d' % i), 'wb') as f:
            f.write(s.encode())
    with open(os.path.join(tdir, 'vars'), 'wb') as f:
        f.write(b"{% for m in messages %}{{ m.role }}:{{ m.content | tojson }}{% endfor %}\x00" +
                json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode())
    for i, (fmt, think, text) in enumerate(TOOLCALL):
        with open(os.path.join(cdir, 'script%02d' % i), 'wb') as f:
            f.write(bytes([fmt | (0x80 if think else 0), 5]) + text.encode())
    write_dict(os.path.join(root, 'dict', 'template.dict'), JINJA_DICT)
    write_dict(os.path.join(root, 'dict', 'toolcall.dict'), TOOL_DICT)


if __name__ == '__main__':
    main()
