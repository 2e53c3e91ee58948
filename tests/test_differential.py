"""Differential tests: pyzdb against plain CPython on the same data.

Every read expression is evaluated by `db.query(expr)` and by `eval(expr, {"db": copy})`;
every statement block is run by `db.execute(block)` and by `exec` on a copy of the data. The
results must be equal in value *and* type, recursively (list vs tuple, int vs bool vs float,
the types and order of dict keys), and after a block the whole stored tree must equal the tree
CPython left behind. Nothing here hard-codes an expected value: CPython computes all of them.

The cases stay inside what the sandbox is meant to allow (no dunders, no `format`, no imports)
and away from aliasing, where pyzdb's documented value semantics (the stored tree is a tree: a
stored container is a copy) differ from CPython's references; `test_storing_is_by_value` checks
that documented difference on its own, against a CPython reference that copies explicitly.
"""

from __future__ import annotations

import copy
import textwrap
from typing import Any

import pytest
from reference import assert_same, cpython_exec, same

# -- the data set -------------------------------------------------------------------------------

DATA: dict[str, Any] = {
    "users": [
        {
            "name": "Ada",
            "age": 36,
            "tags": ["math", "eng"],
            "address": {"city": "London", "zip": "N1"},
            "active": True,
            "score": 9.5,
        },
        {
            "name": "Björn",
            "age": 29,
            "tags": [],
            "address": {"city": "Malmö", "zip": None},
            "active": False,
            "score": 7.25,
        },
        {
            "name": "Chen Wei",
            "age": 41,
            "tags": ["ops", "math", "db"],
            "address": {"city": "北京", "zip": "100000"},
            "active": True,
            "score": 8.0,
        },
        {
            "name": "Dana",
            "age": 29,
            "tags": ["eng"],
            "address": {"city": "Tel Aviv", "zip": "61000"},
            "active": True,
            "score": None,
        },
        {
            "name": "Émile",
            "age": 53,
            "tags": ["db", "eng", "ops"],
            "address": {"city": "Paris", "zip": "75001"},
            "active": False,
            "score": 6.5,
        },
    ],
    "by_id": {1: "Ada", 2: "Björn", 3: "Chen Wei", 10: "Dana", -5: "Émile"},
    "grid": {(0, 0): "a", (0, 1): "b", (1, 0): "c", (1, 1): "d", (2, ("x", 3)): "nested key"},
    "odd_keys": {None: "none", b"k": "bytes", 2.5: "float", False: "bool", "": "empty"},
    "point": (3, 4, 1),
    "nested_tuple": ((1, 2), ("a", (None, True)), ()),
    "pairs": [(1, "one"), (2, "two"), (3, "three")],
    "blob": b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR",
    "floats": [0.5, -1.25, 3.0, 1e-3, 2.5e10, -0.0],
    "mixed": [None, True, False, 0, 1, "", "x", 0.0, [], {}, (), b""],
    "flags": [True, False, True, True],
    "cfg": {
        "debug": False,
        "level": 3,
        "name": "prod",
        "ratio": 0.75,
        "empty": None,
        "path": "/var/lib/pyzdb",
    },
    "greetings": [
        "héllo wörld",
        "ΓΕΙΑ σου",
        "こんにちは",
        "  padded  ",
        "snake_case_name",
        "CamelCase",
    ],
    "words": "the quick brown fox jumps over the lazy dog the end",
    "nums": [(i * 7919) % 1009 - 300 for i in range(1000)],
    "matrix": [[1, 2, 3], [4, 5, 6], [7, 8, 9], [10, 11, 12]],
    "deep": [[[1, [2, [3, [4]]]]], [[], [[]]]],
    "big": 2**100,
    "neg": -17,
    "pi": 3.14159,
    "counts": {"a": 0, "b": 0},
    "empty": {"list": [], "dict": {}, "str": "", "tuple": ()},
}

# -- read expressions -----------------------------------------------------------------------------

EXPRESSIONS = [
    # item access: str, int, tuple, None, bytes, float and bool keys
    "db['cfg']",
    "db['users']",
    "db['users'][0]['name']",
    "db['users'][-1]['address']['city']",
    "db['by_id'][10]",
    "db['by_id'][-5]",
    "db['grid'][(0, 1)]",
    "db['grid'][1, 1]",
    "db['grid'][(2, ('x', 3))]",
    "db['odd_keys'][None]",
    "db['odd_keys'][b'k']",
    "db['odd_keys'][2.5]",
    "db['odd_keys'][False]",
    "db['odd_keys']",
    "db['point']",
    "db['point'][1]",
    "db['nested_tuple'][1][1]",
    "db['deep'][0][0][1][1][1]",
    "db['matrix'][2][-1]",
    "db['mixed']",
    "db['big']",
    "db['empty']",
    "db['grid']",
    # slicing
    "db['nums'][:10]",
    "db['nums'][-5:]",
    "db['nums'][::100]",
    "db['nums'][990:2000]",
    "db['nums'][-10:-3:2]",
    "db['nums'][::-97]",
    "db['nums'][50:10:-7]",
    "db['point'][::-1]",
    "db['matrix'][1:][::2]",
    "db['words'][4:9]",
    "db['words'][::-1][:8]",
    "db['greetings'][2][1:3]",
    "db['blob'][1:4]",
    "db['blob'][::-1]",
    "db['blob'][-4:]",
    "db['blob'][0]",
    "db['blob'][::3]",
    "db['nested_tuple'][:2]",
    # len and membership
    "len(db['nums'])",
    "len(db)",
    "'users' in db",
    "'nope' not in db",
    "3 in db['by_id']",
    "(0, 1) in db['grid']",
    "'math' in db['users'][0]['tags']",
    "b'PNG' in db['blob']",
    "'quick' in db['words']",
    "None in db['odd_keys']",
    "len(db['greetings'][2])",
    "len(db['blob'])",
    # comprehensions of every kind
    "[u['name'] for u in db['users']]",
    "[u['name'] for u in db['users'] if u['age'] > 30]",
    "[v * v for v in db['nums'] if v % 2]",
    "{u['name']: u['age'] for u in db['users']}",
    "{k: v.upper() for k, v in db['by_id'].items() if k > 0}",
    "sorted({t for u in db['users'] for t in u['tags']})",
    "sum(v for v in db['nums'] if v > 0)",
    "any(u['age'] > 50 for u in db['users'])",
    "all(isinstance(v, int) for v in db['nums'])",
    "all(u['active'] for u in db['users'])",
    "any(x is None for x in db['mixed'])",
    "[[c * 2 for c in row] for row in db['matrix']]",
    "[c for row in db['matrix'] for c in row if c % 3 == 0]",
    "{(i, j): v for i, row in enumerate(db['matrix']) for j, v in enumerate(row) if v > 6}",
    "[y for x in db['nums'][:50] if (y := x % 13) > 6]",
    "[(u['name'], s) for u in db['users'] if (s := len(u['tags'])) >= 2]",
    "(total := sum(db['nums'])) // len(db['nums']) + total % 7",
    "[len(t) for u in db['users'] if (t := u['tags'])]",
    "{len(w): w for w in db['words'].split()}",
    "sorted({len(w) for w in db['words'].split()}, reverse=True)",
    "max(len(row) for row in db['deep'])",
    "sum(1 for x in db['mixed'] if x)",
    "[i for i, v in enumerate(db['nums']) if v == 0]",
    "{a: b for a, b in db['pairs']}",
    "[b for a, b in db['pairs'] if a != 2]",
    "sorted({u['age'] for u in db['users']} - {29})",
    "sorted({u['age'] for u in db['users']} & {29, 36, 100})",
    "[[r[i] for r in db['matrix']] for i in range(3)]",
    "sum(sum(row) for row in db['matrix'])",
    "{n: [t.upper() for t in ts] for n, ts in ((u['name'], u['tags']) for u in db['users'])}",
    "[k for k in db['grid'] if k[0] == 1]",
    "[x for x in db['nums'][:30] if x % 2 == 0 if x % 3 == 0]",
    "{k: sorted(v) for k, v in {u['name']: u['tags'] for u in db['users']}.items()}",
    "[[x for x in range(r)] for r in range(5)]",
    "sum(x * y for x, y in zip(db['nums'], db['nums'][1:]))",
    "[(k, v) for k, v in db['odd_keys'].items() if k]",
    # sorted, min, max
    "sorted(db['users'], key=lambda u: u['age'])",
    "[u['name'] for u in sorted(db['users'], key=lambda u: (-u['age'], u['name']))]",
    "sorted(db['nums'], reverse=True)[:7]",
    "sorted(db['by_id'].items(), key=lambda kv: kv[1], reverse=True)",
    "sorted(db['grid'])",
    "sorted(db['greetings'], key=len)",
    "sorted(db['greetings'], key=lambda s: s.lower())",
    "min(db['users'], key=lambda u: u['age'])['name']",
    "max(db['users'], key=lambda u: len(u['tags']))['name']",
    "min(db['nums']), max(db['nums'])",
    "max(db['floats'])",
    "min(db['floats'], key=abs)",
    "max(db['by_id'], key=lambda k: db['by_id'][k])",
    "min([], default='none')",
    "max(db['words'].split(), key=len)",
    "sorted(db['users'], key=lambda u: u['score'] or 0)[-1]['name']",
    "sorted(db['pairs'], key=lambda p: p[1])",
    "sorted(db['flags'])",
    # star-unpacking
    "[*db['point'], *db['matrix'][0]]",
    "{**db['cfg'], 'level': 4}",
    "(*db['point'], None)",
    "max(*db['point'])",
    "sorted({*db['users'][0]['tags'], *db['users'][2]['tags']})",
    "[*range(3), *db['nums'][:2]]",
    "{**db['by_id'], **{1: 'A'}}",
    "(lambda *a: a)(*db['nums'][:4])",
    "(lambda **kw: kw)(**db['counts'])",
    "divmod(*db['point'][:2])",
    # str methods and f-strings
    "db['words'].split()",
    "db['words'].split(' ', 2)",
    "'-'.join(u['name'] for u in db['users'])",
    "db['cfg']['name'].upper()",
    "db['words'].replace('the', 'a')",
    "db['greetings'][3].strip()",
    "[s.startswith('h') for s in db['greetings']]",
    "db['words'].find('fox'), db['words'].find('cat')",
    "db['words'].count('the')",
    "[s.lower() for s in db['greetings']]",
    "db['cfg']['path'].split('/')[1:]",
    "db['greetings'][4].split('_')",
    "db['greetings'][0].endswith('wörld')",
    "db['greetings'][3].lstrip() + '|' + db['greetings'][3].rstrip()",
    "db['words'].title()",
    "str(db['cfg']['level']).zfill(4)",
    "db['words'].index('brown')",
    "', '.join(sorted(db['by_id'].values()))",
    "db['greetings'][0].encode('utf-8')",
    "db['blob'][1:4].decode('ascii')",
    "db['greetings'][2] * 2",
    "db['users'][2]['address']['city'] + '市'",
    "[c for c in db['greetings'][1] if c.isupper()]",
    "' '.join(reversed(db['words'].split()))",
    "[u['address']['zip'].isdigit() for u in db['users'] if u['address']['zip']]",
    "[f\"{u['name']}:{u['age']}\" for u in db['users']]",
    "f\"{db['pi']:.2f}/{db['cfg']['level']:>4}\"",
    "f\"{len(db['nums'])} items, first {db['nums'][0]!r}\"",
    "f\"{db['point']}\"",
    "str(db['matrix'])",
    "str(db['users'][0])",
    "str(db['blob'][:3])",
    # dict methods
    "list(db['cfg'].keys())",
    "list(db['cfg'].values())",
    "list(db['odd_keys'].items())",
    "db['cfg'].get('level')",
    "db['cfg'].get('missing', 'dflt')",
    "db['cfg'].get('empty', 'dflt')",
    "db.get('nope')",
    "db['by_id'].get(3)",
    "db['grid'].get((1, 0))",
    "list(db['grid'].items())[-1]",
    "sorted(db['by_id'].keys())",
    "len(db['cfg'].keys())",
    "db['cfg'].copy()",
    "dict(db['pairs'])",
    "dict(a=1, b=db['point'])",
    "list(db['counts'])",
    # list and tuple methods
    "db['nums'].count(0)",
    "db['nums'].index(db['nums'][500])",
    "db['users'][0]['tags'].index('eng')",
    "db['mixed'].count(None)",
    "db['point'].index(4)",
    "db['nums'].copy()[:3]",
    "[db['flags'].count(True), db['flags'].count(False)]",
    # arithmetic
    "sum(db['nums']) // 7, sum(db['nums']) % 7",
    "-sum(db['nums']) // 7, -sum(db['nums']) % 7",
    "divmod(db['neg'], 5)",
    "divmod(db['pi'], 1)",
    "round(db['pi'], 2), round(db['pi'])",
    "round(2.5), round(3.5), round(-2.5)",
    "round(db['nums'][7] / 3, 3)",
    "abs(db['neg']), abs(-db['pi'])",
    "db['big'] * 3 + 1",
    "db['big'] // 3**20, db['big'] % 97",
    "2 ** 10 - db['neg'], db['neg'] ** 2",
    "7 / 2, db['neg'] / 4, 10 ** -2",
    "sum(db['floats']), sum(db['floats'], 0.5)",
    "sum(db['flags']), True + True",
    "db['cfg']['ratio'] * 4",
    "int(db['pi'] * 100), float(db['cfg']['level'])",
    "int('12') + int(db['cfg']['level'])",
    "[db['nums'][3] << 2, db['nums'][3] >> 1, db['nums'][3] & 7, db['nums'][3] ^ 5]",
    "~db['neg']",
    "-db['floats'][5]",
    "db['floats'][3] * 1000 == 1.0",
    "db['big'] / 2**90",
    # boolean logic, comparisons, conditional expressions
    "db['cfg']['debug'] and 'on' or 'off'",
    "db['cfg']['empty'] or db['cfg']['name']",
    "not db['empty']['list']",
    "db['cfg']['level'] > 2 and db['cfg']['ratio'] < 1",
    "'big' if db['big'] > 10**20 else 'small'",
    "[('even' if v % 2 == 0 else 'odd') for v in db['nums'][:6]]",
    "0 < db['cfg']['level'] <= 3 < 4",
    "db['mixed'][5] or db['mixed'][6] and db['mixed'][3]",
    "[bool(x) for x in db['mixed']]",
    "db['users'][1]['score'] > 7 if db['users'][1]['score'] is not None else None",
    "db['point'] < (3, 5)",
    "db['matrix'] > [[1, 2]]",
    "db['cfg'] == db['cfg'].copy()",
    "db['users'][0] != db['users'][1]",
    "db['empty'] == {'list': [], 'dict': {}, 'str': '', 'tuple': ()}",
    # lambdas, nested
    "(lambda f: f(f(3)))(lambda x: x * 2)",
    "(lambda x: (lambda y: x + y))(10)(db['neg'])",
    "list(map(lambda u: u['address']['city'], db['users']))",
    "(lambda u, k='age': u[k])(db['users'][3])",
    "sorted(db['nums'][:20], key=lambda v: (v % 5, -v))",
    "(lambda *xs, **kw: (xs, sorted(kw.items())))(1, 2, a=db['point'])",
    # isinstance
    "[isinstance(x, (int, float)) for x in db['mixed']]",
    "isinstance(db['point'], tuple), isinstance(db['users'], list), isinstance(db, dict)",
    "[k for k in db['odd_keys'] if isinstance(k, (bytes, float))]",
    "isinstance(db['flags'][0], int), isinstance(db['big'], bool)",
    # enumerate, zip, map, filter, reversed, range and the constructors
    "list(enumerate(db['point']))",
    "list(enumerate(db['users'][0]['tags'], 1))",
    "list(zip(db['point'], db['matrix'][0], 'abc'))",
    "dict(zip(db['words'].split(), range(100)))",
    "list(map(str, db['nums'][:5]))",
    "list(map(lambda a, b: a * b, db['point'], db['point'][1:]))",
    "list(filter(None, db['mixed']))",
    "list(filter(lambda v: v > 700, db['nums']))",
    "list(reversed(db['matrix']))",
    "list(reversed(db['point']))",
    "list(range(0, len(db['nums']), 97))",
    "list(range(10, -10, -3))",
    "[db['nums'][i] for i in range(-1, -6, -1)]",
    "list(zip(*db['matrix']))",
    "list(map(sum, db['matrix']))",
    "list(map(len, db['greetings']))",
    "tuple(db['flags'])",
    "list(db['blob'][:5])",
    "tuple(x for x in db['nums'][:5])",
    "list(db['words'])[:5]",
    "sum(map(abs, db['floats']))",
    "list(enumerate(reversed(db['pairs'])))",
    # the sandbox's own builtins against CPython's exact results (first maximal item, -0.0)
    "max(db['mixed'][1:5]), min([1, True, 1.0]), sorted([1, True, 1.0, 0, False])",
    "sum([True, 2.0]), max([0.0, -0.0]), min([-0.0, 0.0]), sorted([-0.0, 0.0, 0])",
    "max(db['floats'], key=lambda f: f * 0), min(db['mixed'][1:5], key=lambda x: -x)",
    "round(-0.5), round(1234, -2), round(db['big'], -10), round(-0.4), round(-0.4, 0)",
    "sum([[1], [2]], []), sum(db['floats'], start=1), min(db['nums'], default=0)",
    "int(True), float(True), int(-3.9), int('-0'), float('-0'), float('inf'), str(-0.0)",
    "10 / 3, -7 // 2, -7 % 2, 7 % -2, divmod(-7, -2), 5.0 // 2, -5.5 % 2, divmod(7.5, -2)",
    "list(reversed(db['cfg'])), next(iter(db['cfg'])), list(enumerate(db['point'], start=-1))",
    "sorted(set(db['flags'])), sorted(frozenset(db['point'])), bytes([65, 66]), chr(65), ord('a')",
    "repr(db['cfg']), repr(db['odd_keys']), str(db['floats']), str(db['nested_tuple'])",
    "str(), int(), float(), bool(), list(), dict(), tuple(), list(zip())",
    "dict(db['cfg'], extra=1), dict([(1, 2)], a=3), tuple(db['cfg']), list('abc')",
    "db['cfg'] | {'x': 1}, [1, 2] * 3, b'ab' * 2, (1,) * 3, -db['big'], +db['neg']",
    "list(range(5))[::-2], range(5)[-1], sum(range(101)), len(range(0, 100, 7)), 3 in range(5)",
    "[[y for y in row if y > x] for x, row in enumerate(db['matrix'])]",
    "dict((u['name'], u['age']) for u in db['users'])",
    "sorted(db['users'], key=lambda u: u['tags'])[0]['name']",
    "sorted(db['cfg'].keys() & {'level', 'x'}), sorted(db['cfg'].keys() | {'x'})",
    "(lambda d=db: d['neg'])(), (lambda: db['cfg'])()['level'], [*db][:3]",
    # hash-equal keys: the first key stored keeps its type
    "{True: 'a', 1: 'b', 1.0: 'c'}, {1: 'a', True: 'b'}, {**db['by_id'], True: 'x'}",
    "[db['odd_keys'][0], db['odd_keys'][0.0]]",
    # more str, bytes and number methods, %-formatting, f-string format specs
    "'%s-%d' % ('a', 3), '%(name)s is %(level)03d' % db['cfg']",
    "db['words'].partition(' '), db['words'].rpartition(' '), 'a\\nb\\r\\nc'.splitlines()",
    "db['greetings'][1].casefold(), db['greetings'][0].swapcase(), 'ß'.upper(), 'İ'.lower()",
    "db['cfg']['name'].center(10, '*'), db['cfg']['name'].rjust(6, '0')",
    "db['cfg']['path'].removeprefix('/var'), db['words'].rfind('the'), db['words'].rsplit(' ', 2)",
    "db['blob'].hex(), db['blob'].decode('latin-1'), db['blob'].split(b'\\x00')",
    "db['blob'].count(b'\\x00'), db['blob'].find(b'IHDR'), db['blob'].replace(b'\\x00', b'.')",
    "db['blob'].startswith((b'x', b'\\x89')), b'-'.join([b'a', db['blob'][1:4]])",
    "[b for b in db['blob'] if b > 64], sum(db['blob']), max(db['blob'])",
    "(255).bit_length(), db['neg'].bit_count(), db['pi'].is_integer(), (2.5).as_integer_ratio()",
    "db['big'] >> 90, db['big'] & 0xFF, -db['big'] // 7, float(db['big']), 1e308 * 10",
    "f\"{db['big']:,}|{db['pi']:e}|{db['neg']:+05d}|{db['cfg']['name']!s:^9}|{0.5:%}\"",
    "f\"{db['cfg']['level']:{db['cfg']['level']}}|{db['users'][0]!r}|{db['blob'][:2]}\"",
    "[*'abc', *b'ab', *(1,), *{1: 2}]",
    # the root itself
    "sorted(k for k in db if isinstance(k, str))",
    "[k for k in db if len(k) < 5]",
    "db",
]

# -- statement blocks -----------------------------------------------------------------------------

BLOCKS = [
    (
        "assign_new_nested_value",
        """
        db['new'] = {'a': [1, 2, (3, 4)], 'b': None, 7: {(1, 2): b'x'}}
        db['new']
    """,
    ),
    (
        "assign_nested_item",
        """
        db['users'][0]['address']['city'] = 'Cambridge'
        db['users'][0]['address']
    """,
    ),
    (
        "augadd_dict_item",
        """
        db['cfg']['level'] += 1
        db['cfg']['level']
    """,
    ),
    (
        "augadd_nested_items",
        """
        db['matrix'][1][2] += 100
        db['users'][2]['age'] += 1
        db['users'][2]['name'] += '!'
        (db['matrix'][1], db['users'][2]['name'])
    """,
    ),
    (
        "augadd_lists",
        """
        db['users'][1]['tags'] += ['new', 'tags']
        db['nums'] += [1, 2, 3]
        db['users'][0]['tags'] += 'xy'
        len(db['nums']), db['users'][0]['tags']
    """,
    ),
    (
        "augmented_operators",
        """
        db['cfg']['ratio'] *= 2
        db['cfg']['level'] -= 5
        db['neg'] //= 3
        db['big'] %= 1000
        db['point'] += (9,)
        db['cfg']['name'] *= 2
        db['pi'] **= 2
        [db['cfg'], db['neg'], db['big'], db['point'], db['pi']]
    """,
    ),
    (
        "imul_list",
        """
        db['matrix'][0] *= 3
        db['flags'] *= 0
        db['matrix'][0], db['flags']
    """,
    ),
    (
        "append",
        """
        db['users'][3]['tags'].append('lead')
        db['nums'].append(-1)
        db['deep'][1][1].append([])
        db['deep']
    """,
    ),
    (
        "extend",
        """
        db['users'][1]['tags'].extend(t for t in ['x', 'y', 'z'] if t != 'y')
        db['matrix'].extend([[0], []])
        db['matrix'].extend(range(2))
        db['matrix']
    """,
    ),
    (
        "insert",
        """
        db['nums'].insert(0, -99)
        db['nums'].insert(-1, -98)
        db['nums'].insert(10**6, -97)
        db['nums'].insert(-10**6, -96)
        db['users'][0]['tags'].insert(1, 'mid')
        (db['nums'][:3], db['nums'][-3:], db['users'][0]['tags'])
    """,
    ),
    (
        "list_pop",
        """
        a = db['nums'].pop()
        b = db['nums'].pop(0)
        c = db['nums'].pop(-2)
        d = db['users'].pop(1)
        (a, b, c, d['name'], len(db['users']))
    """,
    ),
    (
        "list_pop_as_last_expression",
        """
        db['matrix'].pop(1)
    """,
    ),
    (
        "list_remove",
        """
        db['users'][2]['tags'].remove('math')
        db['nums'].remove(db['nums'][10])
        db['mixed'].remove(None)
        db['mixed'].remove(0)
        db['mixed'].remove(1)
        db['users'][2]['tags'], db['mixed']
    """,
    ),
    (
        "sort_plain",
        """
        db['nums'].sort()
        db['floats'].sort(reverse=True)
        db['nums'][:5] + db['nums'][-5:]
    """,
    ),
    (
        "sort_key_reverse",
        """
        db['users'].sort(key=lambda u: (u['age'], u['name']), reverse=True)
        [u['name'] for u in db['users']]
    """,
    ),
    (
        "sort_key_builtin",
        """
        db['greetings'].sort(key=len)
        db['nums'].sort(key=abs)
        db['greetings'], db['nums'][:10]
    """,
    ),
    (
        "reverse",
        """
        db['nums'].reverse()
        db['matrix'].reverse()
        db['matrix'][0].reverse()
        (db['nums'][:3], db['matrix'])
    """,
    ),
    (
        "clear",
        """
        db['users'][0]['tags'].clear()
        db['cfg'].clear()
        (db['users'][0], db['cfg'])
    """,
    ),
    (
        "slice_assignment",
        """
        db['nums'][10:20] = ['a', 'b']
        db['nums'][:2] = []
        db['nums'][-3:] = [None] * 5
        (len(db['nums']), db['nums'][:10], db['nums'][-6:])
    """,
    ),
    (
        "slice_assignment_with_step",
        """
        db['nums'][::2] = [0] * len(db['nums'][::2])
        db['matrix'][::-2] = [['x'], ['y']]
        db['users'][0]['tags'][::-1] = ('a', 'b')
        (db['nums'][:6], db['matrix'], db['users'][0]['tags'])
    """,
    ),
    (
        "slice_insert",
        """
        db['nums'][5:5] = [1000, 1001]
        db['users'][0]['tags'][1:1] = ['x']
        db['matrix'][len(db['matrix']):] = [[13]]
        db['nums'][3:8]
    """,
    ),
    (
        "slice_deletion_with_step",
        """
        del db['nums'][::3]
        del db['nums'][-10::2]
        del db['nums'][5:100:7]
        (len(db['nums']), db['nums'][:12])
    """,
    ),
    (
        "slice_deletion_negative_step",
        """
        del db['nums'][::-5]
        del db['nums'][:10]
        del db['matrix'][-1:0:-2]
        len(db['nums']), db['matrix']
    """,
    ),
    (
        "del_items",
        """
        del db['nums'][0]
        del db['nums'][-1]
        del db['users'][2]['address']
        del db['matrix'][1][0]
        (db['users'][2], db['matrix'])
    """,
    ),
    (
        "dict_update",
        """
        db['cfg'].update({'level': 4, 'new': [1]})
        db['cfg'].update(extra=True, name='dev')
        db['cfg'].update([('pair', 1)])
        db['cfg']
    """,
    ),
    (
        "dict_setdefault",
        """
        a = db['cfg'].setdefault('level', 100)
        b = db['cfg'].setdefault('fresh', {'x': 1})
        (a, b, db['cfg'])
    """,
    ),
    (
        "dict_setdefault_then_mutate_result",
        """
        db['cfg'].setdefault('hist', []).append(1)
        db['cfg'].setdefault('hist', []).append(2)
        db['cfg'].setdefault('sub', {})['k'] = 'v'
        db['cfg']
    """,
    ),
    (
        "dict_pop",
        """
        a = db['cfg'].pop('level')
        b = db['cfg'].pop('missing', 'dflt')
        c = db['by_id'].pop(10)
        (a, b, c, db['cfg'], db['by_id'])
    """,
    ),
    (
        "dict_popitem",
        """
        a = db['cfg'].popitem()
        b = db['grid'].popitem()
        (a, b)
    """,
    ),
    (
        "dict_ior",
        """
        db['cfg'] |= {'level': 0, 'z': (1, 2)}
        db['by_id'] |= {99: 'new'}
        (db['cfg'], db['by_id'])
    """,
    ),
    (
        "dict_del",
        """
        del db['cfg']['debug']
        del db['grid'][(0, 0)]
        del db['by_id'][-5]
        del db['odd_keys'][None]
        del db['blob']
        sorted(k for k in db if isinstance(k, str))
    """,
    ),
    (
        "delete_then_reinsert_key_moves_it_last",
        """
        del db['cfg']['level']
        db['cfg']['level'] = 3
        list(db['cfg'])
    """,
    ),
    (
        "loop_with_conditionals",
        """
        for u in db['users']:
            if u['age'] > 35:
                u['senior'] = True
            elif u['tags']:
                u['tags'].append('junior')
            else:
                u['tags'] = ['none']
        [u.get('senior', False) for u in db['users']]
    """,
    ),
    (
        "enumerate_loop_assigns_items",
        """
        for i, v in enumerate(db['nums']):
            if v % 10 == 0:
                db['nums'][i] = -v
        sum(db['nums'])
    """,
    ),
    (
        "dict_loop_deletes_falsy",
        """
        for k in list(db['cfg']):
            if not db['cfg'][k]:
                del db['cfg'][k]
        db['cfg']
    """,
    ),
    (
        "for_else",
        """
        for u in db['users']:
            if u['name'].startswith('Z'):
                break
        else:
            db['users'].append({'name': 'Zoë', 'age': 1, 'tags': [], 'address': {}})
        len(db['users'])
    """,
    ),
    (
        "local_def_helper",
        """
        def score(u):
            return u['age'] * 2 + len(u['tags'])
        db['scores'] = {u['name']: score(u) for u in db['users']}
        max(db['scores'], key=lambda k: db['scores'][k])
    """,
    ),
    (
        "recursive_def",
        """
        def flatten(x):
            out = []
            for item in x:
                if isinstance(item, list):
                    out.extend(flatten(item))
                else:
                    out.append(item)
            return out
        db['flat'] = flatten(db['deep'])
        db['flat']
    """,
    ),
    (
        "def_with_defaults_mutating_tree",
        """
        def tag(u, label='vip', times=1):
            for i in range(times):
                u['tags'].append(label)
            return len(u['tags'])
        [tag(u) if u['active'] else tag(u, 'x', 2) for u in db['users']]
    """,
    ),
    (
        "unpacking_assignment",
        """
        a, b, c = db['point']
        first, *rest = db['nums'][:5]
        (x, y), z = db['pairs'][0], db['pairs'][1]
        for k, (p, q) in enumerate(db['pairs']):
            db['counts'][q] = p * k
        db['unpacked'] = [a + b + c, first, rest, x, y, z]
        db['unpacked']
    """,
    ),
    (
        "swap_items",
        """
        db['users'][0], db['users'][1] = db['users'][1], db['users'][0]
        db['cfg']['level'], db['cfg']['ratio'] = db['cfg']['ratio'], db['cfg']['level']
        [u['name'] for u in db['users']]
    """,
    ),
    (
        "while_with_break",
        """
        i = 0
        total = 0
        while True:
            total += db['nums'][i]
            if total > 5000:
                break
            i += 1
        db['stop'] = {'index': i, 'total': total}
        db['stop']
    """,
    ),
    (
        "while_with_continue",
        """
        n = 0
        found = []
        while n < len(db['nums']):
            n += 1
            if db['nums'][n - 1] % 7:
                continue
            found.append(db['nums'][n - 1])
            if len(found) == 5:
                break
        db['found'] = found
        found
    """,
    ),
    (
        "try_except_keyerror",
        """
        try:
            v = db['cfg']['missing']
        except KeyError as e:
            v = 'missing: ' + str(e)
        db['cfg']['result'] = v
        v
    """,
    ),
    (
        "try_except_else",
        """
        log = []
        for k in ['level', 'nope', 'name']:
            try:
                val = db['cfg'][k]
            except KeyError:
                log.append(('miss', k))
            else:
                log.append(('hit', val))
            log.append(k)
        db['log'] = log
        len(log)
    """,
    ),
    (
        "try_except_after_failed_mutation",
        """
        try:
            db['users'][0]['tags'].pop(10)
        except IndexError:
            db['users'][0]['tags'].append('recovered')
        try:
            db['by_id'][1] += 1
        except TypeError:
            db['by_id'][1] += '?'
        db['users'][0]['tags'], db['by_id']
    """,
    ),
    (
        "build_index_locally",
        """
        index = {}
        for u in db['users']:
            for t in u['tags']:
                index.setdefault(t, []).append(u['name'])
        db['index'] = index
        sorted(index)
    """,
    ),
    (
        "build_index_in_tree",
        """
        db['idx'] = {}
        for u in db['users']:
            for t in u['tags']:
                db['idx'].setdefault(t, []).append(u['name'])
        db['idx']
    """,
    ),
    (
        "mutate_through_local_names",
        """
        u = db['users'][3]
        u['age'] = 30
        u['tags'].append('alias')
        a = u['address']
        a['zip'] = None
        del a['city']
        u
    """,
    ),
    (
        "inplace_operators_on_local_names",
        """
        l = db['nums']
        l += [7, 7]
        m = db['matrix'][0]
        m *= 2
        t = db['point']
        t += (1,)
        d = db['cfg']
        d |= {'via': 'alias'}
        (len(db['nums']), db['matrix'][0], db['point'], t, db['cfg'])
    """,
    ),
    (
        "int_and_tuple_keys",
        """
        db['by_id'][4] = 'four'
        db['by_id'][1] += '!'
        db['grid'][2, 2] = 'e'
        db['grid'][(0, 0)] = ['replaced']
        db['grid'][('t', (1, 2))] = {}
        (db['by_id'], db['grid'])
    """,
    ),
    (
        "non_str_keys_at_root",
        """
        db[7] = 'seven'
        db[(1, 'a')] = [1]
        db[None] = {None: None}
        db[b'raw'] = b'bytes'
        db[2.5] = 2.5
        [k for k in db if not isinstance(k, str)]
    """,
    ),
    (
        "odd_values",
        """
        db['vals'] = [2**200, -0.0, 1e308, float('inf'), -10**30, '', b'\\x00\\xff', (), ((),),
                      {(): ()}, [[[]]], True, 'ünï\\u2603']
        db['vals']
    """,
    ),
    (
        "nested_build_through_local_node",
        """
        db['tree'] = {'root': {'children': []}}
        node = db['tree']['root']
        for i in range(3):
            child = {'id': i, 'children': [{'id': (i, j)} for j in range(i)]}
            node['children'].append(child)
        node['children'][2]['children'][1]['leaf'] = True
        db['tree']
    """,
    ),
    (
        "comprehensions_stored_no_result",
        """
        db['squares'] = {n: n * n for n in range(10) if n % 2}
        db['pairs2'] = [(a, b) for a in range(3) for b in 'xy']
        db['nested'] = [[i] * i for i in range(4)]
    """,
    ),
    (
        "conditional_expression_store",
        """
        for u in db['users']:
            u['band'] = 'old' if u['age'] >= 40 else ('mid' if u['age'] >= 30 else 'young')
        [u['band'] for u in db['users']]
    """,
    ),
    (
        "lambda_sort_and_store",
        """
        key = lambda u: (len(u['tags']), u['name'])
        db['ranked'] = [u['name'] for u in sorted(db['users'], key=key, reverse=True)]
        db['users'].sort(key=key)
        db['ranked']
    """,
    ),
    (
        "matrix_transpose",
        """
        db['matrix'] = [list(col) for col in zip(*db['matrix'])]
        db['matrix'][0][0] = 'corner'
        db['matrix']
    """,
    ),
    (
        "word_counter",
        """
        for w in db['words'].split():
            db['counts'][w] = db['counts'].get(w, 0) + 1
        sorted(db['counts'].items(), key=lambda kv: (-kv[1], kv[0]))[:3]
    """,
    ),
    (
        "walrus_in_block",
        """
        if (n := len(db['nums'])) > 100:
            db['size'] = n
        db['evens'] = [y for x in db['nums'][:20] if (y := x * 2) % 4 == 0]
        (n, y, db['evens'])
    """,
    ),
    (
        "bytes_values",
        """
        db['blob'] = db['blob'][:4] + b'-' + db['blob'][-4:]
        db['blob'] += b'\\x00'
        db['blob'][::-1]
    """,
    ),
    (
        "change_element_types",
        """
        db['flags'][0] = 1
        db['flags'][1] = 1.0
        db['flags'][2] = None
        db['point'] = list(db['point'])
        db['matrix'][0] = tuple(db['matrix'][0])
        db['flags'], db['point'], db['matrix']
    """,
    ),
    (
        "nested_list_mutations",
        """
        db['deep'][0][0][1][1].append('x')
        db['deep'][1][1][0].extend([1, 2])
        db['deep'][1].insert(0, [[0]])
        db['deep'][1][0][0][0] += 5
        db['deep']
    """,
    ),
    (
        "root_dict_methods",
        """
        db.update({'r': 1})
        blob = db.pop('blob')
        db.setdefault('r2', []).append(len(blob))
        k, v = db.popitem()
        (k, v, list(db)[-3:])
    """,
    ),
    (
        "replace_whole_subtrees",
        """
        db['users'] = [u['name'] for u in db['users']]
        db['cfg'] = None
        db['matrix'] = {'rows': len(db['matrix'])}
        db['users'], db['cfg'], db['matrix']
    """,
    ),
    (
        "mutate_container_after_del",
        """
        u = db['users'][0]
        del db['users'][0]
        u['age'] = 0
        u['tags'].append('x')
        u['address']['city'] = 'X'
        (u, db['users'][0])
    """,
    ),
    (
        "mutate_container_after_replace",
        """
        old = db['cfg']
        db['cfg'] = {}
        old['level'] = 0
        old
    """,
    ),
    (
        "mutate_container_after_pop_and_slice_delete",
        """
        p = db['matrix'].pop()
        p.append(99)
        m = db['matrix'][1]
        del db['matrix'][::2]
        m.append(5)
        t = db['users'][2]['tags']
        db['users'][2].pop('tags')
        t.clear()
        (p, m, t, db['matrix'])
    """,
    ),
    (
        "mutate_containers_reached_through_methods",
        """
        db['users'][0].setdefault('tags', []).append('via-setdefault')
        db['users'][1].get('tags').append('via-get')
        for v in db['users'][2].values():
            if isinstance(v, list):
                v.append('via-values')
        for k, v in db['users'][3].items():
            if isinstance(v, dict):
                v['via'] = k
        [u['tags'] for u in db['users']], db['users'][3]
    """,
    ),
    (
        "mutate_containers_reached_through_builtins",
        """
        s = sorted(db['users'], key=lambda u: u['age'])
        s[0]['age'] = -1
        min(db['users'], key=lambda u: u['age'])['age'] += 100
        for row in reversed(db['matrix']):
            row.clear()
            break
        list(map(lambda r: r.append(0), db['matrix']))
        for a, b in zip(db['matrix'], db['users']):
            a.append(b['name'])
        [u['age'] for u in db['users']], db['matrix']
    """,
    ),
    (
        "shallow_copies_share_children",
        """
        c = db['users'][0].copy()
        c['tags'].append('shallow')
        c['age'] = 1
        l = list(db['matrix'])
        l[1].append('shallow')
        l.append([])
        first, *rest = db['matrix']
        rest[-1].append('rest')
        f = lambda r=db['matrix'][2]: r.append(7)
        f()
        db['users'][0], db['matrix']
    """,
    ),
    (
        "hash_equal_keys",
        """
        db['by_id'][True] = 'one'
        db['by_id'][2.0] += '?'
        del db['odd_keys'][0]
        db['odd_keys'][0.0] = 'zero'
        db['by_id'], db['odd_keys']
    """,
    ),
    (
        "self_referencing_updates",
        """
        db['nums'][::2] = db['nums'][1::2]
        db['nums'][:] = db['nums'][::-1]
        db['nums'][1:3] = (x for x in range(5))
        db['nums'] += db['nums']
        db['cfg'].update(db['cfg'])
        db['cfg'] |= db['cfg']
        len(db['nums']), db['nums'][:8], db['cfg']
    """,
    ),
    (
        "read_only_block",
        """
        total = 0
        for v in db['nums']:
            total += v
        total
    """,
    ),
]

# A block that raises must change nothing (the README: a failed query changes nothing); the
# exception type is the one CPython raises on the same data.
FAILING_BLOCKS = [
    (
        "append_then_keyerror",
        """
        db['nums'].append(1)
        db['missing']
    """,
    ),
    (
        "assign_then_indexerror",
        """
        db['cfg']['level'] = 99
        db['users'][10]
    """,
    ),
    (
        "loop_then_zerodivision",
        """
        for u in db['users']:
            u['age'] += 1
            if u['age'] > 50:
                1 // 0
    """,
    ),
    (
        "pop_from_emptied_list",
        """
        db['new'] = {'a': [1]}
        db['new']['a'].pop()
        db['new']['a'].pop()
    """,
    ),
    (
        "sort_then_unsortable_sort",
        """
        db['nums'].sort()
        db['mixed'].sort()
    """,
    ),
    (
        "delete_then_read",
        """
        del db['cfg']
        db['cfg']['x'] = 1
    """,
    ),
    (
        "clear_then_valueerror",
        """
        db['users'].clear()
        db['by_id'].clear()
        int('x')
    """,
    ),
    (
        "sort_key_fails_midway",
        """
        db['users'][0]['age'] = 100
        db['users'].sort(key=lambda u: u['score'])
    """,
    ),
    (
        "method_of_a_value_that_is_none",
        """
        db['cfg']['level'] += 1
        db['cfg']['empty'].append(1)
    """,
    ),
    (
        "method_of_a_value_that_is_a_str",
        """
        db['cfg']['level'] += 1
        db['cfg']['name'].append(1)
    """,
    ),
    (
        "slice_step_size_mismatch",
        """
        db['nums'][:3] = []
        db['nums'][::2] = [1, 2]
    """,
    ),
]

# Read expressions that raise: pyzdb raises the same built-in type.
FAILING_EXPRESSIONS = [
    "db['missing']",
    "db['nums'][1000]",
    "db['by_id'][4]",
    "db['grid'][(9, 9)]",
    "1 // (db['neg'] + 17)",
    "db['cfg'] + 1",
    "int(db['cfg']['name'])",
    "db['nums'].index(-10**6)",
    "db['point'][5]",
    "sorted(db['mixed'])",
    "min([])",
    "db['blob'][100]",
    "[x for x in db['cfg']['level']]",
    "{db['matrix'][0]: 1}",
    "db['users'][0]['name'] + 1",
    "db['words'].split('')",
    "db['floats'][4] ** 40",
    "sorted(db['users'], key=lambda u: u['score'])",
    "db['users'][0]['tags'].index('eng', 0, 1)",
    "db['cfg']['level'].upper()",
    "db['cfg']['empty'].upper()",
]

# pyzdb stores by value (the README's data model: "storing a container that already lives in
# the tree stores a copy"). The CPython reference
# spells out that copy with `deepcopy`, so the expected values are still CPython's.
BY_VALUE_BLOCKS = [
    (
        "store_tree_dict_elsewhere",
        """
        db['copy'] = db['users'][0]
        db['copy']['name'] = 'changed'
        (db['users'][0]['name'], db['copy']['name'])
    """,
        """
        db['copy'] = deepcopy(db['users'][0])
        db['copy']['name'] = 'changed'
        (db['users'][0]['name'], db['copy']['name'])
    """,
    ),
    (
        "store_tree_list_elsewhere",
        """
        db['l2'] = db['nums']
        db['l2'].append(1)
        (len(db['nums']), len(db['l2']))
    """,
        """
        db['l2'] = deepcopy(db['nums'])
        db['l2'].append(1)
        (len(db['nums']), len(db['l2']))
    """,
    ),
    (
        "append_element_of_same_list",
        """
        db['users'].append(db['users'][0])
        db['users'][-1]['age'] = 0
        db['users'][0]['age']
    """,
        """
        db['users'].append(deepcopy(db['users'][0]))
        db['users'][-1]['age'] = 0
        db['users'][0]['age']
    """,
    ),
    (
        "append_list_to_itself",
        """
        db['matrix'].append(db['matrix'])
        db['matrix'][-1][0].append('inner')
        db['matrix']
    """,
        """
        db['matrix'].append(deepcopy(db['matrix']))
        db['matrix'][-1][0].append('inner')
        db['matrix']
    """,
    ),
    (
        "extend_list_with_itself",
        """
        db['matrix'].extend(db['matrix'])
        db['matrix'][0].append(0)
        db['matrix']
    """,
        """
        db['matrix'].extend(deepcopy(db['matrix']))
        db['matrix'][0].append(0)
        db['matrix']
    """,
    ),
    (
        "popped_container_stored_back",
        """
        u = db['users'].pop(0)
        db['users'].append(u)
        u['age'] = 1
        (u['age'], db['users'][-1]['age'])
    """,
        """
        u = db['users'].pop(0)
        db['users'].append(deepcopy(u))
        u['age'] = 1
        (u['age'], db['users'][-1]['age'])
    """,
    ),
    (
        "local_list_stored_then_mutated",
        """
        v = [1, 2]
        db['a'] = v
        v.append(3)
        (v, db['a'])
    """,
        """
        v = [1, 2]
        db['a'] = deepcopy(v)
        v.append(3)
        (v, db['a'])
    """,
    ),
]


# -- helpers --------------------------------------------------------------------------------------


def load(db: Any) -> None:
    """Store the data set in one request (`test_the_data_set_round_trips` uses the path proxy)."""
    db.execute("for key in data:\n    db[key] = data[key]\n", data=DATA)


def case_id(index: int, text: str) -> str:
    flat = " ".join(text.split())
    return f"{index:03d}:{flat[:70]}"


def block_source(text: str) -> str:
    return textwrap.dedent(text).strip("\n") + "\n"


# -- tests ----------------------------------------------------------------------------------------


def test_the_data_set_round_trips(db):
    for key, value in DATA.items():
        db[key] = value
    assert_same(db.get(), copy.deepcopy(DATA), "db.get()")
    assert_same(db.query("db"), copy.deepcopy(DATA), "db.query('db')")


@pytest.mark.parametrize(
    "expr", EXPRESSIONS, ids=[case_id(i, e) for i, e in enumerate(EXPRESSIONS)]
)
def test_read_expression(db, expr):
    load(db)
    expected = eval(expr, {"db": copy.deepcopy(DATA)})  # the CPython reference run
    assert_same(db.query(expr), expected, expr)


@pytest.mark.parametrize("name,text", BLOCKS, ids=[name for name, _ in BLOCKS])
def test_statement_block(db, name, text):
    source = block_source(text)
    load(db)
    tree = copy.deepcopy(DATA)
    expected = cpython_exec(source, {"db": tree})
    assert_same(db.execute(source), expected, f"{name}: returned value")
    assert_same(db.get(), tree, f"{name}: tree after the block")


def _changes_the_tree(text: str) -> bool:
    tree = copy.deepcopy(DATA)
    cpython_exec(block_source(text), {"db": tree})
    return not same(tree, DATA)


WRITING_BLOCKS = [(name, text) for name, text in BLOCKS if _changes_the_tree(text)]


@pytest.mark.parametrize("name,text", WRITING_BLOCKS, ids=[name for name, _ in WRITING_BLOCKS])
def test_statement_block_undo_and_redo(db, name, text):
    """One block is one unit: undo restores the tree exactly, redo brings the block's tree back."""
    source = block_source(text)
    load(db)
    tree = copy.deepcopy(DATA)
    cpython_exec(source, {"db": tree})
    db.execute(source)
    assert db.undo() is True
    assert_same(db.get(), copy.deepcopy(DATA), f"{name}: tree after undo")
    assert db.redo() is True
    assert_same(db.get(), tree, f"{name}: tree after redo")


@pytest.mark.parametrize("name,text", FAILING_BLOCKS, ids=[name for name, _ in FAILING_BLOCKS])
def test_failing_block_changes_nothing(db, name, text):
    source = block_source(text)
    load(db)
    with pytest.raises(Exception) as reference:
        cpython_exec(source, {"db": copy.deepcopy(DATA)})
    with pytest.raises(Exception) as raised:
        db.execute(source)
    assert type(raised.value) is type(reference.value), (
        f"pyzdb raised {raised.value!r}, CPython raised {reference.value!r}"
    )
    assert_same(db.get(), copy.deepcopy(DATA), f"{name}: tree after the failed block")


@pytest.mark.parametrize(
    "expr", FAILING_EXPRESSIONS, ids=[case_id(i, e) for i, e in enumerate(FAILING_EXPRESSIONS)]
)
def test_failing_expression_raises_the_same_type(db, expr):
    load(db)
    with pytest.raises(Exception) as reference:
        eval(expr, {"db": copy.deepcopy(DATA)})  # the CPython reference run
    with pytest.raises(Exception) as raised:
        db.query(expr)
    assert type(raised.value) is type(reference.value), (
        f"pyzdb raised {raised.value!r}, CPython raised {reference.value!r}"
    )


@pytest.mark.parametrize(
    "name,text,reference", BY_VALUE_BLOCKS, ids=[name for name, *_ in BY_VALUE_BLOCKS]
)
def test_storing_is_by_value(db, name, text, reference):
    """Documented difference from CPython: a stored container is a copy, never an alias."""
    load(db)
    tree = copy.deepcopy(DATA)
    expected = cpython_exec(block_source(reference), {"db": tree, "deepcopy": copy.deepcopy})
    assert_same(db.execute(block_source(text)), expected, f"{name}: returned value")
    assert_same(db.get(), tree, f"{name}: tree after the block")
