#!/usr/bin/env bash
# check-layers.sh: keeps lib/ layered. lib/LAYERS orders its folders bottom to top; a file may
# include headers of its own folder or of a lower one, and its compiled object may call into
# its own folder or a lower one. Inside one folder, modules (a file plus the files named
# <file>_*.c beside it) must not call each other in a circle. The same run enforces the shape
# limits of the house style: no .c file over 1000 lines, no function over 80.
#
#   scripts/check-layers.sh                   this checkout against its build/ (build it first)
#   scripts/check-layers.sh SRC_DIR OBJ_DIR   check SRC_DIR/lib against the objects in OBJ_DIR
#                                             (CMake's object dir of runsd_core: it holds
#                                             lib/<folder>/<file>.c.o)
#   scripts/check-layers.sh --self-test       build a small tree with known violations in a
#                                             temp dir and check that each one is reported
#
# Exits 0 when clean, 1 with every violation listed, 2 on bad usage.
set -euo pipefail

usage()
{
	echo "usage: $0 [SRC_DIR OBJ_DIR] | --self-test" >&2
	exit 2
}

# The check proper. Includes are read from the sources, calls from `nm` on the objects: a file
# calls another when one of its undefined symbols is defined (T, D, B, R) in the other.
check()
{
	python3 - "$1" "$2" <<'PY'
import os, re, subprocess, sys
from collections import defaultdict

MAX_FILE_LINES = 1000
MAX_FUNC_LINES = 80
TOP = '.'           # the files directly in lib/ (server.c, the composition root)
PUBLIC = 'include'  # lib/include/: the public header, for the top layer only
DEFINED = set('TDBR')

src_dir, obj_dir = sys.argv[1], sys.argv[2]
lib = os.path.join(src_dir, 'lib')
errors = defaultdict(list)  # section -> messages
notes = []


def rel(path):
    return os.path.relpath(path, src_dir)


def folder_of(librel):
    """lib-relative path -> its layer folder ('.' for files directly in lib/)."""
    parts = librel.split('/')
    return TOP if len(parts) == 1 else parts[0]


# lib/LAYERS: one folder per line, bottom first, '#' starts a comment.
layers_path = os.path.join(lib, 'LAYERS')
if not os.path.isfile(layers_path):
    print(f'{rel(layers_path)}: missing', file=sys.stderr)
    sys.exit(1)
order = []
with open(layers_path) as f:
    for n, line in enumerate(f, 1):
        name = line.split('#', 1)[0].strip()
        if not name:
            continue
        if name in order:
            errors['layers'].append(f'{rel(layers_path)}:{n}: {name} listed twice')
            continue
        order.append(name)
if TOP not in order:
    errors['layers'].append(f'{rel(layers_path)}: the top layer "{TOP}" (files directly in lib/) is not listed')
    order.append(TOP)
rank = {name: i + 1 for i, name in enumerate(order)}
absent = [d for d in order if d != TOP and not os.path.isdir(os.path.join(lib, d))]
if absent:
    notes.append('listed but absent: ' + ', '.join(absent))


def layer(folder):
    return f'{folder} (layer {rank[folder]})'


# Sources, as lib-relative paths.
sources = []
for root, dirs, files in os.walk(lib):
    dirs.sort()
    for name in sorted(files):
        if name.endswith(('.c', '.h')):
            sources.append(os.path.relpath(os.path.join(root, name), lib))
unlisted = set()
for s in sources:
    d = folder_of(s)
    if d != PUBLIC and d not in rank and d not in unlisted:
        unlisted.add(d)
        errors['layers'].append(f'lib/{d}/: folder not listed in lib/LAYERS')

# a) Includes.
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')
n_includes = 0
for s in sources:
    d = folder_of(s)
    if d == PUBLIC or d not in rank:
        continue
    with open(os.path.join(lib, s), errors='replace') as f:
        for n, line in enumerate(f, 1):
            m = INCLUDE.match(line)
            if not m:
                continue
            n_includes += 1
            inc = m.group(1)
            here = os.path.join(lib, os.path.dirname(s), inc)
            if '/' in inc:
                target = inc.split('/', 1)[0]
                if target not in rank and target != PUBLIC:
                    if os.path.exists(os.path.join(lib, PUBLIC, inc)):
                        target = PUBLIC
                    else:
                        errors['includes'].append(f'lib/{s}:{n}: include "{inc}" names no folder of lib/LAYERS')
                        continue
            elif not os.path.exists(here) and os.path.exists(os.path.join(lib, PUBLIC, inc)):
                target = PUBLIC
            else:
                target = d  # no folder part: the including file's own folder
            if target == PUBLIC:
                if d != TOP:
                    errors['includes'].append(
                        f'lib/{s}:{n}: include "{inc}": public header from {layer(d)}; '
                        f'only the top layer "{TOP}" may include lib/{PUBLIC}/')
            elif rank[target] > rank[d]:
                errors['includes'].append(
                    f'lib/{s}:{n}: upward include "{inc}": {layer(d)} -> {layer(target)}')

# b) Calls, from the objects. CMake names them <obj_dir>/lib/<folder>/<file>.c.o.
objects = {}  # lib-relative source -> object path
stale = []
if os.path.isdir(obj_dir):
    for root, dirs, files in os.walk(obj_dir):
        for name in files:
            if not name.endswith('.o'):
                continue
            path = os.path.join(root, name)
            r = os.path.relpath(path, obj_dir)
            if not r.startswith('lib/'):
                continue
            s = r[len('lib/'):-len('.o')]
            if s not in sources:
                stale.append(r)  # source moved or deleted since the last build
                continue
            objects[s] = path
if not objects:
    errors['calls'].append(f'{obj_dir}: no objects of lib/ found (build first)')
if stale:
    notes.append(f'{len(stale)} object(s) without a source ignored: ' + ', '.join(sorted(stale)))
missing = [s for s in sources if s.endswith('.c') and folder_of(s) in rank and s not in objects]
if objects and missing:
    errors['calls'].append('no object for ' + ', '.join('lib/' + s for s in missing) + ' (build first)')

defs = defaultdict(list)              # symbol -> files defining it
undefs = {s: set() for s in objects}  # file -> symbols it needs
by_path = {path: s for s, path in objects.items()}
if objects:
    # One nm for all objects; -A prefixes each line with "<object>: ".
    out = subprocess.run(['nm', '-P', '-A'] + sorted(by_path), check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        path, _, rest = line.partition(': ')
        parts = rest.split()
        if path not in by_path or len(parts) < 2:
            continue
        s, sym, typ = by_path[path], parts[0], parts[1]
        if typ == 'U':
            undefs[s].add(sym)
        elif typ in DEFINED:
            defs[sym].append(s)
for sym, where in sorted(defs.items()):
    if len(where) > 1:
        errors['calls'].append(f'{sym} defined in ' + ', '.join('lib/' + w for w in where))

edges = defaultdict(set)  # (from, to) -> symbols
for a, need in undefs.items():
    for sym in need:
        for b in defs.get(sym, ()):
            if b != a:
                edges[(a, b)].add(sym)


def syms(ss):
    return ', '.join(sorted(ss))


for (a, b), ss in sorted(edges.items()):
    da, db = folder_of(a), folder_of(b)
    if da in rank and db in rank and rank[db] > rank[da]:
        errors['calls'].append(f'lib/{a} -> lib/{b}: upward call {layer(da)} -> {layer(db)}: {syms(ss)}')


# Cycles inside one folder, between modules. A cycle across folders needs an upward call,
# reported above. X belongs to module M when X == M or X starts with M_ and M.c is in X's folder.
def module_of(s):
    d = os.path.dirname(s)
    base = os.path.basename(s)[:-2]
    peers = [os.path.basename(p)[:-2] for p in objects if os.path.dirname(p) == d]
    owners = [m for m in peers if base == m or base.startswith(m + '_')]
    return os.path.join(d, min(owners, key=len))


modules = sorted({module_of(s) for s in objects})
graph = defaultdict(set)
for (a, b) in edges:
    ma, mb = module_of(a), module_of(b)
    if ma != mb and folder_of(a) == folder_of(b):
        graph[ma].add(mb)


def sccs(nodes, graph):
    """Tarjan's strongly connected components, iteratively."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1
                    stack.append(w); on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)
                    if w == v:
                        break
                out.append(sorted(comp))
    return out


for comp in sccs(modules, graph):
    if len(comp) < 2:
        continue
    names = ', '.join(os.path.basename(m) for m in comp)
    d = os.path.dirname(comp[0])
    lines = [f'lib/{d + "/" if d else ""}: cycle between modules {names}:']
    for (a, b), ss in sorted(edges.items()):
        if module_of(a) in comp and module_of(b) in comp and module_of(a) != module_of(b):
            lines.append(f'    lib/{a} -> lib/{b}: {syms(ss)}')
    errors['cycles'].append('\n'.join(lines))

# d) Shape: file and function length. Code is clang-formatted in Linux style, so a function
# body opens with "{" alone at column 0 and closes with "}" at column 0.
NAME = re.compile(r'([A-Za-z_]\w*)\s*\(')
n_funcs = 0
for s in sources:
    if folder_of(s) == PUBLIC:
        continue
    with open(os.path.join(lib, s), errors='replace') as f:
        text = f.read().split('\n')
    if text and text[-1] == '':
        text.pop()
    if s.endswith('.c') and len(text) > MAX_FILE_LINES:
        errors['shape'].append(f'lib/{s}: {len(text)} lines (limit {MAX_FILE_LINES})')
    i = 0
    while i < len(text):
        if text[i].rstrip() != '{':
            i += 1
            continue
        # The header: back to the line that starts at column 0 (continuations are indented).
        h = i - 1
        while h > 0 and text[h][:1] in (' ', '\t'):
            h -= 1
        m = NAME.search(' '.join(text[h:i]))
        j = i + 1
        while j < len(text) and not text[j].startswith('}'):
            j += 1
        if m:
            n_funcs += 1
            length = j - i + 1
            if length > MAX_FUNC_LINES:
                errors['shape'].append(
                    f'lib/{s}:{h + 1}: function {m.group(1)} is {length} lines (limit {MAX_FUNC_LINES})')
        i = j + 1

n_edges = len(edges)
n_up = sum(1 for (a, b) in edges if folder_of(a) != folder_of(b))
print(f'layers: {" < ".join(order)}')
print(f'{len(sources)} sources, {len(objects)} objects, {n_includes} includes, '
      f'{n_edges} call edges between files ({n_up} across folders), {len(modules)} modules, '
      f'{n_funcs} functions')
for note in notes:
    print('note: ' + note)
total = 0
for section in ('layers', 'includes', 'calls', 'cycles', 'shape'):
    if errors[section]:
        print(f'\n{section}: {len(errors[section])} violation(s)')
        for e in errors[section]:
            print('  ' + e)
        total += len(errors[section])
if total:
    print(f'\nFAIL: {total} violation(s)')
    sys.exit(1)
print('OK')
PY
}

# Builds a small tree, first clean (must pass), then with one violation of each kind (each must
# be reported), and with same-module calls and an absent folder that must not be.
self_test()
{
	local out rc fails=0
	t=$(mktemp -d)
	trap 'rm -rf "$t"' EXIT
	mkdir -p "$t/lib/base" "$t/lib/mid" "$t/lib/top" "$t/lib/include"
	cat >"$t/lib/LAYERS" <<-'EOF'
		# bottom first
		base
		ghost   # listed, not created yet
		mid
		top
		.
	EOF
	printf 'int b_get(void);\n' >"$t/lib/base/b.h"
	printf '#include "base/b.h"\nint b_get(void)\n{\n\treturn 1;\n}\n' >"$t/lib/base/b.c"
	printf 'int t_get(void);\n' >"$t/lib/top/t.h"
	printf '#include "top/t.h"\n#include "base/b.h"\nint t_get(void)\n{\n\treturn b_get();\n}\n' \
		>"$t/lib/top/t.c"
	printf 'int pub(void);\n' >"$t/lib/include/pub.h"
	printf '#include "runsd_pub_ok.h"\n#include "pub.h"\n#include "top/t.h"\nint pub(void)\n{\n\treturn t_get();\n}\n' \
		>"$t/lib/app.c"
	printf 'int app_ok(void);\n' >"$t/lib/runsd_pub_ok.h"
	# A module split over two files that call each other: one module, no cycle.
	printf 'int s_a(void);\nint s_b(void);\nint s_a(void)\n{\n\treturn s_b();\n}\n' >"$t/lib/mid/solo.c"
	printf 'int s_a(void);\nint s_b(void);\nint s_b(void)\n{\n\treturn s_a() + 1;\n}\n' \
		>"$t/lib/mid/solo_util.c"

	compile()
	{
		local c o
		rm -rf "$t/obj"
		for c in $(cd "$t" && find lib -name '*.c'); do
			o="$t/obj/$c.o"
			mkdir -p "$(dirname "$o")"
			${CC:-cc} -c -I"$t/lib" -I"$t/lib/include" -o "$o" "$t/$c"
		done
	}
	expect()
	{
		if ! grep -qF -- "$1" <<<"$out"; then
			echo "self-test: not reported: $1" >&2
			fails=$((fails + 1))
		fi
	}
	refute()
	{
		if grep -qF -- "$1" <<<"$out"; then
			echo "self-test: wrongly reported: $1" >&2
			fails=$((fails + 1))
		fi
	}

	compile
	rc=0
	out=$(check "$t" "$t/obj") || rc=$?
	echo "--- clean tree (exit $rc)"
	echo "$out"
	[ "$rc" -eq 0 ] || { echo "self-test: clean tree failed" >&2; fails=$((fails + 1)); }

	# One violation of each kind.
	printf '#include "base/b.h"\n#include "top/t.h"\n#include "pub.h"\nint b_get(void)\n{\n\treturn t_get();\n}\n' \
		>"$t/lib/base/b.c"
	printf 'int x_f(void);\nint y_f(void);\nint x_f(void)\n{\n\treturn y_f();\n}\n' >"$t/lib/mid/x.c"
	printf 'int x_f(void);\nint y_f(void);\nint y_f(void)\n{\n\treturn x_f() + 1;\n}\n' >"$t/lib/mid/y.c"
	{
		printf 'int long_fn(int a);\nint long_fn(int a)\n{\n'
		for _ in $(seq 85); do printf '\ta++;\n'; done
		printf '\treturn a;\n}\n'
		for _ in $(seq 920); do printf '/* filler */\n'; done
	} >"$t/lib/mid/long.c"
	compile
	rc=0
	out=$(check "$t" "$t/obj") || rc=$?
	echo "--- tree with violations (exit $rc)"
	echo "$out"
	[ "$rc" -eq 1 ] || { echo "self-test: expected exit 1, got $rc" >&2; fails=$((fails + 1)); }
	expect 'lib/base/b.c:2: upward include "top/t.h": base (layer 1) -> top (layer 4)'
	expect 'lib/base/b.c:3: include "pub.h": public header from base (layer 1)'
	expect 'lib/base/b.c -> lib/top/t.c: upward call base (layer 1) -> top (layer 4): t_get'
	expect 'lib/mid/: cycle between modules x, y:'
	expect 'lib/mid/x.c -> lib/mid/y.c: y_f'
	expect 'lib/mid/y.c -> lib/mid/x.c: x_f'
	expect 'lib/mid/long.c:2: function long_fn is 88 lines (limit 80)'
	expect 'lib/mid/long.c: 1010 lines (limit 1000)'
	refute 'solo'
	refute 'not listed in lib/LAYERS'
	refute 'lib/app.c'
	refute 'lib/top/t.c ->'

	if [ "$fails" -ne 0 ]; then
		echo "self-test: FAIL ($fails)" >&2
		exit 1
	fi
	echo "self-test: OK"
}

case "${1:-}" in
--self-test) [ $# -eq 1 ] || usage; self_test ;;
'')
	# No arguments: this checkout and its default build (scripts/test.sh's build/).
	root=$(cd "$(dirname "$0")/.." && pwd)
	check "$root" "$root/build/CMakeFiles/runsd_core.dir"
	;;
-*) usage ;;
*) [ $# -eq 2 ] || usage; check "$1" "$2" ;;
esac
