"""The limits of a spec file, all in one place: README.md's "Limits" lists the same values.

Each is far above what a real spec uses (the example specs: at most 2.3 KB, about 120 YAML nodes nested 10 deep,
4 matrix cases, templates of a few dozen characters rendering in microseconds) and low enough that a
hostile or broken file fails within seconds with a message naming the limit, never a traceback or a hang.
"""

from __future__ import annotations

# a spec or rules file is read whole: a file larger than this is refused before it is read
MAX_FILE_BYTES = 1024 * 1024

# mappings and lists nested deeper than this (also through aliases): well below where recursion in the
# checks (jsonschema validates a nested tool schema ~10 frames per level) would break
MAX_DEPTH = 64

# YAML nodes (scalars, mappings, lists, aliases) in one document: composing stops at the next one
MAX_NODES = 50_000

# values once aliases are expanded ("billion laughs": a small file that repeats aliases of aliases)
MAX_VALUES = 100_000

# conversations one matrix may cross into, counted before they are built
MAX_CASES = 10_000

# characters a template may output, and the longest string or text it may build on the way
MAX_TEMPLATE_OUTPUT = 1_000_000

# items a template may put in one list (or range, dict, set): Jinja's own sandbox allows ranges this long
MAX_TEMPLATE_ITEMS = 100_000

# characters of code (inside `{{ }}` and `{% %}`) in one template: compiling takes ~15 us per character
# (20,000: under 0.4 s, whatever the code), and a 300,000-character list literal took a minute
MAX_TEMPLATE_CODE = 20_000

# seconds one template may take to compile and render, at load time and for each tool call at run time
TEMPLATE_SECONDS = 2.0

# seconds all the templates of one spec file (every matrix case) may take together at load time
FILE_TEMPLATE_SECONDS = 10.0

# digits of an integer (Python's own limit for reading or printing one)
MAX_INT_DIGITS = 4300

# knowledge files one `files:` list (or one turn's `attachments:`) may name once its globs are matched: the
# API's limit for a vector store created with its files (`vector_stores.create(file_ids=...)`)
MAX_KNOWLEDGE_FILES = 500

# files `files:` may name for an assistant with the code_interpreter tool: the API's limit for
# `tool_resources.code_interpreter.file_ids`
MAX_CODE_FILES = 20

# bytes of one knowledge file: the API's (and the built-in backend's) limit for an uploaded file
MAX_KNOWLEDGE_FILE_BYTES = 512 * 1024 * 1024

# folder entries one glob may look through: `**` in a folder with a million files fails in a second, not an hour
MAX_GLOB_ENTRIES = 100_000
