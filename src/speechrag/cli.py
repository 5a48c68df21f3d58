"""The ``speechrag`` command: a thin typer layer over the library (parse, call, print)."""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress

from speechrag.assets import AssetError, cache_dir
from speechrag.audio import AudioError
from speechrag.corpus.tts import VoiceError
from speechrag.lexical import DEFAULT_WEIGHT, HybridConfig
from speechrag.llm import LLMError
from speechrag.progress import progress_bar
from speechrag.segment import SegmenterConfig

app = typer.Typer(help="End-to-end speech retrieval: index recorded speech, search it with "
                       "questions, evaluate retrievers.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
corpus_app = typer.Typer(help="Build the WikiSpoken benchmark corpus.", no_args_is_help=True)
app.add_typer(corpus_app, name="corpus")

out = Console()
err = Console(stderr=True, soft_wrap=True)  # messages stay one line each, greppable
USER_ERRORS = (AudioError, AssetError, VoiceError, LLMError, ValueError, FileNotFoundError)


def user_errors(fn: Callable) -> Callable:
    """Print expected failures as one line and exit 2, instead of a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from speechrag.index import IndexConfigError

        try:
            return fn(*args, **kwargs)
        except (*USER_ERRORS, IndexConfigError) as e:
            err.print(f"error: {e}", style="red", markup=False, highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def _progress() -> Progress:
    return progress_bar(err)


def _audio_progress(progress: Progress, files: list[str]) -> Callable[[str, float], None]:
    """A bar over seconds of audio; returns the on_progress callback the index calls."""
    from speechrag.audio import duration_s

    lengths: dict[str, float] = {}
    for f in files:
        try:
            lengths[f] = duration_s(f)
        except AudioError:
            lengths[f] = 0.0
    task = progress.add_task("indexing (audio s)", total=round(sum(lengths.values())))
    done: dict[str, float] = {}

    def on_progress(path: str, seconds: float) -> None:
        step = seconds - done.get(path, 0.0)
        done[path] = seconds
        progress.update(task, advance=round(step), description=f"indexing {Path(path).name}")

    return on_progress


def _version(value: bool) -> None:
    if value:
        from speechrag import __version__

        out.print(f"speechrag {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    """End-to-end speech retrieval: index recorded speech, search it, evaluate retrievers."""


# -- index ------------------------------------------------------------------------------------


@app.command()
@user_errors
def index(
    paths: Annotated[list[Path], typer.Argument(help="Audio files or folders (recursive).")],
    index_dir: Annotated[Path, typer.Option("--index", help="Index directory.")],
    model: Annotated[str | None, typer.Option(
        help="Model preset or model JSON (default: the index's model, else cascade).")] = None,
    window: Annotated[float | None, typer.Option(
        help="Window length, seconds (default: the index's, else "
             f"{SegmenterConfig.window_s:g}).")] = None,
    hop: Annotated[float | None, typer.Option(
        help="Hop between windows, seconds (default: the index's, else window / 2).")] = None,
    vad: Annotated[bool, typer.Option("--vad", help="Cut at speech pauses (silero-vad), "
                                      "segments up to --window seconds.")] = False,
    ray: Annotated[bool, typer.Option(
        "--ray", help="Encode on Ray workers (a local Ray, or --ray-address's cluster); the "
                      "rows come back here and go into the index as a local run's do.")
    ] = False,
    ray_address: Annotated[str | None, typer.Option(
        help="With --ray: the cluster to use (auto, or ray://head:10001).")] = None,
    ray_workers: Annotated[int, typer.Option(
        help="With --ray: workers, each with its own copy of the model.", min=1)] = 2,
    ray_cpus: Annotated[float, typer.Option(
        help="With --ray: CPUs per worker (its model's threads).", min=0.1)] = 1.0,
    ray_gpus: Annotated[float, typer.Option(
        help="With --ray: GPUs per worker (0: CPU).", min=0.0)] = 0.0,
) -> None:
    """Index audio files: segments, embeddings and transcripts go into a LanceDB index.

    Re-running adds only new or changed files; an interrupted run resumes."""
    from speechrag import open_index
    from speechrag.index import collect_audio_files

    segmenter = (SegmenterConfig.of(window, hop, vad)
                 if window is not None or hop is not None or vad else None)
    idx, retriever = open_index(index_dir, model, segmenter)
    files, missing = collect_audio_files(paths)
    for path, why in missing:
        err.print(f"skipped {path}: {why}", markup=False, highlight=False)
    with _progress() as progress:
        on_progress = _audio_progress(progress, files)

        def on_skip(path: str, why: str) -> None:
            progress.console.print(f"skipped {path}: {why}", markup=False, highlight=False)

        idx.on_note = lambda m: progress.console.print(m, markup=False, highlight=False)
        encode = None
        if ray or ray_address:
            from speechrag.distributed import RayConfig, ray_encoder

            encode = ray_encoder(idx, RayConfig(address=ray_address,
                                                workers=ray_workers, cpus_per_worker=ray_cpus,
                                                gpus_per_worker=ray_gpus),
                                 on_file=on_progress)
        report = idx.add_files(files, retriever, on_progress=on_progress, on_skip=on_skip,
                               encode=encode)
    failed = missing + report.failed
    err.print(f"indexed {len(report.indexed)} file(s), {report.n_segments} segments, "
              f"{report.audio_s:.0f} s of audio in {report.wall_s:.1f} s; "
              f"{len(report.unchanged)} unchanged; {len(failed)} skipped; "
              f"index holds {len(idx)} segments from {len(idx.indexed_files())} file(s)")
    if failed:
        err.print("skipped files:")
        for path, why in failed:
            err.print(f"  {path}: {why}", markup=False, highlight=False)
    if not report.indexed and not report.unchanged:
        raise typer.Exit(1)


# -- search -----------------------------------------------------------------------------------

# The question options `search` and `ask` share.
IndexOption = Annotated[Path, typer.Option("--index", help="Index directory.")]
QueryOption = Annotated[str | None, typer.Option(help="A question.")]
QueryAudioOption = Annotated[Path | None, typer.Option(
    help="A spoken question (audio file, up to 2 minutes).")]
QueriesOption = Annotated[Path | None, typer.Option(
    help='JSONL file, one {"id": ..., "text": ...} or {"id": ..., "audio": PATH} per line.')]


def _questions(query: str | None, query_audio: Path | None, queries: Path | None
               ) -> list[dict]:
    """The questions of exactly one of --query, --query-audio, --queries, checked before
    any model loads (an empty question or unreadable audio file fails here)."""
    from speechrag.audio import load_query_audio
    from speechrag.queries import read_queries

    if sum(x is not None for x in (query, query_audio, queries)) != 1:
        raise ValueError("give exactly one of --query TEXT, --query-audio FILE or "
                         "--queries FILE.jsonl")
    if query is not None:
        if not query.strip():
            raise ValueError("--query is empty: give the question's words")
        return [{"id": 1, "text": query}]
    if query_audio is not None:
        load_query_audio(query_audio)
        return [{"id": 1, "audio": str(query_audio)}]
    return read_queries(queries)  # type: ignore[arg-type]



@app.command()
@user_errors
def search(
    index_dir: IndexOption,
    query: QueryOption = None,
    query_audio: QueryAudioOption = None,
    queries: QueriesOption = None,
    k: Annotated[int, typer.Option(help="Hits per query.", min=1)] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per query.")] = False,
    model: Annotated[str | None, typer.Option(
        help="Refuse unless the index was built with this model.")] = None,
    hybrid: Annotated[float, typer.Option(
        help="Hybrid search: re-rank the best 100 hits by cosine + this weight x the "
             "match of the question's words to each hit's transcript (0: cosine only; "
             f"{DEFAULT_WEIGHT} was chosen on validation). A spoken question's words are "
             "what the model heard.", min=0.0)] = 0.0,
    exact: Annotated[bool, typer.Option(
        "--exact", help="Exact cosine search even where the index has a vector index "
                        "(large indexes: slower, and the reference for its recall).")] = False,
) -> None:
    """Search an index with written or spoken questions; prints source, start-end (mm:ss),
    score and text. Audio indexes and text-document indexes alike."""
    from speechrag.index import Index
    from speechrag.queries import encode_queries
    from speechrag.report import hits_table
    from speechrag.retrievers import from_spec, resolve_spec
    from speechrag.retrievers.text_side import text_side

    qs = _questions(query, query_audio, queries)
    idx = Index.open(index_dir)
    if model is not None:
        idx.check_model(resolve_spec(model))
    if len(idx) == 0:
        err.print(f"note: {index_dir} holds nothing yet, so no query has hits: index audio "
                  "(`speechrag index`) or documents (`speechrag index-text`) into it first",
                  markup=False, highlight=False)
    # written questions need only the model's text side (no torch: a cold start in ~1 s)
    retriever = (text_side(idx.config.model) if all("audio" not in q for q in qs)
                 else from_spec(idx.config.model))
    qs, vectors, words = encode_queries(
        retriever, qs, on_skip=lambda q, why: err.print(f"skipped query {q['id']}: {why}",
                                                        markup=False, highlight=False))
    results = idx.search(vectors, k, words, HybridConfig(weight=hybrid), exact=exact)
    for q, hits in zip(qs, results, strict=True):
        shown = q.get("text") or f"[spoken] {q['audio']}"
        if as_json:
            line = {"query_id": q["id"], "query": q.get("text"), "query_audio": q.get("audio"),
                    "hits": [h.to_dict() for h in hits]}
            sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        else:
            out.print(hits_table(shown, hits))


# -- ask --------------------------------------------------------------------------------------


@app.command()
@user_errors
def ask(
    index_dir: IndexOption,
    query: QueryOption = None,
    query_audio: QueryAudioOption = None,
    queries: QueriesOption = None,
    k: Annotated[int, typer.Option(help="Hits given to the LLM.", min=1, max=50)] = 5,
    llm: Annotated[str | None, typer.Option(
        help="LLM: qwen2.5-coder-1.5b (default), qwen2.5-coder-0.5b, smollm2-135m, a .gguf "
             "file, or the URL of an OpenAI-compatible server (its key from "
             "$OPENAI_API_KEY).")] = None,
    context: Annotated[str, typer.Option(
        help="What the LLM reads for each hit: 'stored' (the index's transcript), 'asr' "
             "(Whisper transcribes the hit's audio now; kept for next time) or 'speech' "
             "(the SpeechLLM hears the hit's audio; no transcript).")] = "stored",
    speech_llm: Annotated[str | None, typer.Option(
        "--speech-llm", metavar="[PATH]",
        help="Answer with the SpeechLLM, which hears a spoken question as speech (no "
             "transcript): the shipped projector, or a checkpoint you trained "
             "(docs/speechllm.md). It answers with its own LLM (the output names it).")
    ] = None,
    context_tokens: Annotated[int | None, typer.Option(
        help="Most tokens of hit text the LLM reads: hits are cut to their sentences most "
             "like the question (fewer tokens, sooner first token). 0: every word. "
             "Default 300.", min=0)] = None,
    max_tokens: Annotated[int, typer.Option(help="Longest answer, in tokens.", min=1,
                                            max=4096)] = 96,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per question.")] = False,
) -> None:
    """Answer questions from an index with an LLM, citing the moments: the answer streams
    as it is written, then one line per cited source, [n] source mm:ss-mm:ss."""
    from speechrag.audio import load_query_audio
    from speechrag.llm import LLMConfig
    from speechrag.rag import Asker, check_question
    from speechrag.report import shown_source
    from speechrag.timestamps import mmss

    qs = _questions(query, query_audio, queries)
    if query is not None:
        check_question(query)  # not too long either
    config = LLMConfig(max_tokens=max_tokens) if llm is None else \
        LLMConfig(model=llm, max_tokens=max_tokens)
    asker = Asker(index_dir, config, context=context, context_tokens=context_tokens,
                  speech_llm=True if speech_llm == DEFAULT_PROJECTOR else speech_llm)

    def note(message: str) -> None:
        err.print(message, markup=False, highlight=False)

    if asker.speech is not None:
        note(f"answering with {asker.speech.name}")

    failed = 0
    for q in qs:
        try:
            if "audio" in q:
                stream = asker.stream(audio=load_query_audio(q["audio"]), k=k,
                                      source=q["audio"])
            else:
                stream = asker.stream(q["text"], k=k)
        except (AudioError, ValueError) as e:  # one bad question never sinks the others
            note(f"skipped question {q['id']}: {e}")
            failed += 1
            continue
        if stream.prompt.dropped:
            passages = len(stream.prompt.hits) + stream.prompt.dropped
            note(f"note: {stream.prompt.dropped} of {passages} passages did not fit the "
                 "LLM's context and were left out")
        if not as_json:
            if len(qs) > 1 or "audio" in q:
                shown = q.get("text") or f"{stream.query}  (heard in {q['audio']})"
                out.print(f"[bold]Q{'' if len(qs) == 1 else ' ' + str(q['id'])}:[/] "
                          f"{escape(shown)}")
            try:
                for piece in stream:
                    sys.stdout.write(piece)
                    sys.stdout.flush()
            except KeyboardInterrupt:
                sys.stdout.write("\n")
                note("interrupted")
                raise typer.Exit(130) from None
            sys.stdout.write("\n")
            answer = stream.answer
            assert answer is not None
            for c in answer.citations:
                where = "" if c.start is None else f" {mmss(c.start)}-{mmss(c.end)}"
                out.print(f"[{c.n}] {shown_source(c.source)}{where}", markup=False,
                          highlight=False)
            if not answer.citations and not answer.no_answer:
                note("(the answer cites no passage)")
            continue
        answer = stream.text()
        line = {"query_id": q["id"], "query": q.get("text"), "query_audio": q.get("audio"),
                "heard": answer.heard, "answer": answer.text,
                "citations": [{"n": c.n, "source": c.source, "start": c.start,
                               "end": c.end, "score": c.score} for c in answer.citations],
                "hits": [h.to_dict() for h in answer.hits], "dropped": answer.dropped,
                "timings": {key: round(v, 2) for key, v in answer.timings.items()}}
        sys.stdout.write(json.dumps(line, ensure_ascii=False) + "\n")
        sys.stdout.flush()
    if failed == len(qs):
        raise typer.Exit(2)


# -- serve ------------------------------------------------------------------------------------


@app.command()
@user_errors
def serve(
    index_dir: Annotated[Path, typer.Option("--index", help="Index directory.")],
    host: Annotated[str, typer.Option(
        help="Address to listen on; anything but 127.0.0.1/localhost needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.", min=1, max=65535)] = 8000,
    llm: Annotated[str | None, typer.Option(
        help="Answer questions too, with this LLM ('default', a name, a .gguf file or "
             "an OpenAI-compatible URL); without it the page only searches.")] = None,
    token: Annotated[str | None, typer.Option(
        help="Require this token (Authorization: Bearer TOKEN; the page: open "
             "URL/#token=TOKEN). Default: $SPEECHRAG_TOKEN.", envvar="SPEECHRAG_TOKEN")
    ] = None,
) -> None:
    """A web page and an HTTP API over an index: search by text or voice, read the
    answer, play the moments. API documentation at /docs."""
    from speechrag.server import ServeConfig, ServeError, create_app

    config = ServeConfig(index=str(index_dir), host=host, port=port, llm=llm, token=token)
    try:
        config.check()
    except ServeError as e:
        raise ValueError(str(e)) from None
    import uvicorn

    application = create_app(config)
    shown = "[::1]" if host == "::1" else host
    err.print(f"speechrag: serving {index_dir} at http://{shown}:{port}/"
              + ("#token=..." if token else "") + f"  (API: http://{shown}:{port}/docs; "
              "Ctrl-C stops)", markup=False, highlight=False)
    uvicorn.run(application, host=host, port=port, log_level="warning")


# -- info / remove ----------------------------------------------------------------------------


@app.command()
@user_errors
def info(
    index_dir: Annotated[Path, typer.Option("--index", help="Index directory.")],
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
) -> None:
    """What an index holds: model, files, hours of audio, segments, when it was written."""
    from speechrag.index import Index
    from speechrag.report import info_table

    summary = Index.open(index_dir).summary()
    if as_json:
        sys.stdout.write(json.dumps(summary, ensure_ascii=False) + "\n")
    else:
        out.print(info_table(summary))


@app.command()
@user_errors
def remove(
    names: Annotated[list[str], typer.Argument(
        help="Files (as given to `index`, or as indexed) or text document ids.")],
    index_dir: Annotated[Path, typer.Option("--index", help="Index directory.")],
) -> None:
    """Take files or documents out of an index (their segments and their record). Running
    it again after an interruption finishes the job."""
    from speechrag.index import Index

    idx = Index.open(index_dir)
    removed, missing = idx.remove(names)
    for name in missing:
        err.print(f"not in the index: {name}", markup=False, highlight=False)
    err.print(f"removed {len(removed)}; index holds {len(idx)} segments from "
              f"{len(idx.indexed_files())} file(s)", markup=False, highlight=False)
    if missing and not removed:
        raise typer.Exit(1)


# -- index-text -------------------------------------------------------------------------------


@app.command("index-text")
@user_errors
def index_text(
    documents: Annotated[Path, typer.Argument(help='JSONL file, one {"id": ..., "text": ...} '
                                              "per line.")],
    index_dir: Annotated[Path, typer.Option("--index", help="Index directory.")],
    model: Annotated[str | None, typer.Option(
        help="Model (default: the index's model, else cascade's text encoder).")] = None,
) -> None:
    """Index text documents, so spoken (or written) questions can retrieve them.

    Hits report source = the document id and no times. Re-running skips unchanged
    documents and replaces changed ones; a bad line is reported and skipped."""
    from speechrag import open_index, read_documents

    docs, problems = read_documents(documents)
    for where, why in problems:
        err.print(f"skipped {where}: {why}", markup=False, highlight=False)
    if not docs:
        raise ValueError(f"{documents}: no document to index")
    idx, retriever = open_index(index_dir, model)
    with _progress() as progress:
        task = progress.add_task("indexing documents", total=len(docs))
        idx.on_note = lambda m: progress.console.print(m, markup=False, highlight=False)
        report = idx.add_texts(docs, retriever,
                               on_progress=lambda n: progress.update(task, completed=n))
        progress.update(task, completed=len(docs))
    err.print(f"indexed {len(report.indexed)} document(s) in {report.wall_s:.1f} s; "
              f"{len(report.unchanged)} unchanged; {len(problems)} skipped line(s)")


# -- eval -------------------------------------------------------------------------------------


@app.command("eval")
@user_errors
def eval_(
    corpus: Annotated[Path, typer.Option(help="A corpus built by `speechrag corpus build`.")],
    model: Annotated[str, typer.Option(
        help="Model preset, model JSON, or gold-text (clean-text upper bound).")] = "cascade",
    out_dir: Annotated[Path, typer.Option("--out", help="Reports, chart and indexes.")] = Path(
        "speechrag-eval"),
    window: Annotated[float | None, typer.Option(
        help=f"Window length, seconds (default {SegmenterConfig.window_s:g}).")] = None,
    hop: Annotated[float | None, typer.Option(
        help="Hop between windows, seconds (default: window / 2).")] = None,
    k: Annotated[int, typer.Option(help="Hits per query.", min=10)] = 10,
    spoken_queries: Annotated[bool, typer.Option(
        "--spoken-queries", help="Ask the corpus's spoken queries (see `corpus "
        "speak-queries`) instead of the written ones.")] = False,
    hybrid: Annotated[float, typer.Option(
        help="Hybrid search: the lexical match's weight, as in `search --hybrid`; 0 scores "
             "cosine alone.", min=0.0)] = 0.0,
) -> None:
    """Index a corpus with a model, run its queries, report R@k, MRR, RTF, latency, WER."""
    _eval(corpus, model, out_dir, SegmenterConfig.of(window, hop), k, spoken_queries, hybrid)


def _eval(corpus: Path, model: str, out_dir: Path, segmenter: SegmenterConfig | None = None,
          k: int = 10, spoken: bool = False, hybrid: float = 0.0) -> dict:
    """Run the evaluator with a progress bar; print its table and where it wrote."""
    from speechrag.corpus.build import load_corpus
    from speechrag.evaluate import run_eval
    from speechrag.report import eval_table

    c = load_corpus(corpus)
    with _progress() as progress:
        report, path, chart = run_eval(c, model, out_dir, k=k, segmenter=segmenter,
                                       spoken=spoken, hybrid=hybrid,
                                       on_progress=_audio_progress(progress, c.audio_files()))
    out.print(eval_table(report))
    err.print(f"report: {path}\nchart:  {chart}", markup=False, highlight=False)
    return report


# -- train ----------------------------------------------------------------------------------


@app.command(add_help_option=False,  # --help goes to the trainer, which knows its options
             context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@user_errors
def train(
    ctx: typer.Context,
    arch: Annotated[str, typer.Option(
        help="What to train: clsr, seal, or clsr-adapter (a trained CLSR's document "
             "adapter, --init CLSR.pt).")] = "clsr",
) -> None:
    """Train a model: --arch clsr|seal|clsr-adapter --corpus DIR [--config FILE] [--out DIR]
    [--features DIR] (see `speechrag train --arch seal --help`)."""
    from speechrag.train import main as train_main

    path = train_main(["--arch", arch, *ctx.args])
    err.print(f"model: {path}", markup=False, highlight=False)


# -- corpus -----------------------------------------------------------------------------------


@corpus_app.command("build")
@user_errors
def corpus_build(
    out_dir: Annotated[Path, typer.Option("--out", help="Corpus directory.")],
    split: Annotated[str, typer.Option(
        help="train, dev or test; or validation (the train passages training holds out, "
             "in training voices).")] = "test",
    passages: Annotated[int, typer.Option(help="Number of passages.", min=1)] = 50,
    voices: Annotated[list[str] | None, typer.Option(
        help="Voices, repeated or comma-separated (default: the evaluation voices "
             "flite:slt,festival:kal_diphone; for train and validation, the training "
             "voices). A train corpus may shift flite voices into "
             "other speakers: flite:awb:shift draws one per passage, flite:awb:w1.2:f150 is "
             "one (vocal-tract warp, mean pitch in Hz).")] = None,
    layout: Annotated[str, typer.Option(
        help="episodes (long-form), passages (one file each) or queries (no passage audio: "
             "documents.jsonl for text retrieval).")] = "episodes",
    per_episode: Annotated[int, typer.Option(help="Passages per episode.", min=1)] = 10,
    seed: Annotated[int, typer.Option(help="Seed of passage order, voices and pauses.")] = 0,
    workers: Annotated[int | None, typer.Option(
        help="TTS processes at once (default: one per CPU core); the corpus is the same "
             "for any number.", min=1)] = None,
) -> None:
    """Speak WikiSpoken passages with TTS voices; writes audio, manifest.jsonl, queries.jsonl."""
    from speechrag.corpus import tts
    from speechrag.corpus.build import CorpusConfig, build_corpus, default_workers

    chosen = tuple(v.strip() for vs in (voices or []) for v in vs.split(",") if v.strip())
    default = tts.TRAINING if split in ("train", "validation") else tts.EVALUATION
    config = CorpusConfig(split=split, passages=passages, voices=chosen or default,
                          layout=layout, seed=seed, per_episode=per_episode)
    with _progress() as progress:
        task = progress.add_task("speaking passages", total=passages)
        c = build_corpus(config, out_dir,
                         on_progress=lambda d, _t: progress.update(task, completed=d),
                         workers=workers or default_workers())
        progress.update(task, completed=passages)
    if layout == "queries":
        err.print(f"{out_dir}: {len(c.documents)} text documents (documents.jsonl), "
                  f"{len(c.queries)} queries; speak them with `speechrag corpus speak-queries`",
                  markup=False, highlight=False)
        return
    total_s = sum(m["end"] - m["start"] for m in c.manifest)
    err.print(f"{out_dir}: {len(c.manifest)} passages, {len(c.audio_files())} audio file(s), "
              f"{total_s / 60:.1f} min of speech, {len(c.queries)} queries",
              markup=False, highlight=False)


@corpus_app.command("speak-queries")
@user_errors
def corpus_speak_queries(
    corpus: Annotated[Path, typer.Option(help="A corpus built by `speechrag corpus build`.")],
    voices: Annotated[list[str] | None, typer.Option(
        help="Voices, repeated or comma-separated (default: the evaluation voices; a train "
             "corpus: the voices it was built with).")] = None,
    kinds: Annotated[str, typer.Option(
        help="Query kinds to speak, comma-separated.")] = "description,title",
    workers: Annotated[int | None, typer.Option(
        help="TTS processes at once (default: one per CPU core).", min=1)] = None,
) -> None:
    """Speak a corpus's queries (for spoken-query search and eval --spoken-queries)."""
    from speechrag.corpus.build import default_workers, load_corpus, speak_queries

    chosen = tuple(v.strip() for vs in (voices or []) for v in vs.split(",") if v.strip())
    wanted = tuple(k.strip() for k in kinds.split(",") if k.strip())
    total = sum(q["kind"] in wanted for q in load_corpus(corpus).queries)
    with _progress() as progress:
        task = progress.add_task("speaking queries", total=total)
        c = speak_queries(corpus, chosen or None, wanted,
                          on_progress=lambda d, _t: progress.update(task, completed=d),
                          workers=workers or default_workers())
    err.print(f"{corpus}: {len(c.spoken_queries)} spoken queries", markup=False,
              highlight=False)


# -- demo -------------------------------------------------------------------------------------


DEMO_QUESTIONS = 3


@app.command()
@user_errors
def demo(
    passages: Annotated[int, typer.Option(help="Passages in the demo corpus.", min=2)] = 10,
    model: Annotated[str, typer.Option(help="Model to demonstrate.")] = "cascade",
) -> None:
    """Build a small long-form corpus, index it, ask a few questions, print hits and metrics."""
    from speechrag.corpus.build import CorpusConfig, build_corpus
    from speechrag.index import Index
    from speechrag.report import hits_table
    from speechrag.retrievers import from_spec

    root = cache_dir() / "demo"
    corpus_dir = root / f"corpus-{passages}"
    err.print(f"[bold]1/3[/bold] building a WikiSpoken test corpus in {escape(str(corpus_dir))}")
    with _progress() as progress:
        task = progress.add_task("speaking passages", total=passages)
        c = build_corpus(CorpusConfig(split="test", passages=passages, per_episode=5), corpus_dir,
                         on_progress=lambda d, _t: progress.update(task, completed=d))
    err.print(f"[bold]2/3[/bold] indexing {len(c.audio_files())} episodes with {escape(model)} "
              "and running the benchmark queries")
    eval_dir = root / f"eval-{passages}"
    report = _eval(corpus_dir, model, eval_dir)
    err.print("[bold]3/3[/bold] a few questions:")
    index_dir = Path(report["index"])
    idx = Index.open(index_dir)
    retriever = from_spec(idx.config.model)
    questions = [q for q in c.queries if q["kind"] == "description"][:DEMO_QUESTIONS]
    vectors = retriever.encode_text([q["text"] for q in questions])
    for q, hits in zip(questions, idx.search(vectors, 3), strict=True):
        gold = next(m for m in c.manifest if m["passage_id"] == q["passage_id"])
        out.print(hits_table(f"{q['text']}   (answer: {gold['title']}, {gold['audio']})", hits))
    r1 = report["retrieval"]["overall"]["R@1"]
    err.print(f"done: R@1 {100 * r1:.1f}% over {report['retrieval']['overall']['n']} queries. "
              f"Search it yourself:\n  .venv/bin/speechrag search --index {index_dir} "
              "--query 'your question'", markup=False, highlight=False)


DEFAULT_PROJECTOR = "default"  # `--speech-llm` given without a path


def main(argv: list[str] | None = None) -> None:
    """The console entry point: ``--speech-llm`` may come without a path (the shipped
    projector); click options take a value or none, never either, so one is filled in."""
    args = list(sys.argv[1:] if argv is None else argv)
    fixed: list[str] = []
    for i, a in enumerate(args):
        fixed.append(a)
        if a == "--speech-llm" and (i + 1 == len(args) or args[i + 1].startswith("-")):
            fixed.append(DEFAULT_PROJECTOR)
    app(args=fixed, prog_name="speechrag")


if __name__ == "__main__":
    main()
