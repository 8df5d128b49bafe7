"""File extension (or well-known file name) -> programming language, The Stack / linguist style.

Only languages listed here are kept; everything else is dropped as `unsupported_extension`. `.h` counts as C
(the convention of The Stack v1), `.m` as Objective-C.
"""

from __future__ import annotations

from pathlib import PurePosixPath

LANGUAGE_EXTENSIONS: dict[str, tuple[str, ...]] = {
    "Assembly": (".asm", ".s", ".nasm"),
    "Batchfile": (".bat", ".cmd"),
    "C": (".c", ".h"),
    "C#": (".cs", ".csx"),
    "C++": (".cc", ".cpp", ".cxx", ".c++", ".hpp", ".hh", ".hxx", ".h++", ".inl", ".ipp", ".tcc"),
    "CMake": (".cmake",),
    "CSS": (".css",),
    "CUDA": (".cu", ".cuh"),
    "Clojure": (".clj", ".cljs", ".cljc", ".edn"),
    "Cython": (".pyx", ".pxd", ".pxi"),
    "Dart": (".dart",),
    "Dockerfile": (".dockerfile",),
    "Elixir": (".ex", ".exs"),
    "Erlang": (".erl", ".hrl"),
    "Fortran": (".f", ".f90", ".f95", ".f03", ".f08", ".for"),
    "Go": (".go",),
    "Groovy": (".groovy", ".gradle"),
    "HTML": (".html", ".htm", ".xhtml"),
    "Haskell": (".hs", ".lhs"),
    "JSON": (".json", ".jsonl", ".geojson", ".ipynb"),
    "Java": (".java",),
    "JavaScript": (".js", ".mjs", ".cjs", ".jsx"),
    "Julia": (".jl",),
    "Kotlin": (".kt", ".kts"),
    "Lua": (".lua",),
    "Makefile": (".mk", ".mak"),
    "Markdown": (".md", ".markdown"),
    "OCaml": (".ml", ".mli"),
    "Objective-C": (".m",),
    "Objective-C++": (".mm",),
    "PHP": (".php", ".phtml"),
    "Perl": (".pl", ".pm", ".t"),
    "PowerShell": (".ps1", ".psm1", ".psd1"),
    "Protocol Buffer": (".proto",),
    "Python": (".py", ".pyi", ".pyw"),
    "R": (".r",),
    "Ruby": (".rb", ".rake", ".gemspec"),
    "Rust": (".rs",),
    "SCSS": (".scss", ".sass"),
    "SQL": (".sql",),
    "Scala": (".scala", ".sc"),
    "Shell": (".sh", ".bash", ".zsh", ".ksh"),
    "Svelte": (".svelte",),
    "Swift": (".swift",),
    "TOML": (".toml",),
    "TeX": (".tex", ".sty", ".cls", ".bib"),
    "TypeScript": (".ts", ".tsx", ".mts", ".cts"),
    "Verilog": (".v", ".sv", ".svh"),
    "VHDL": (".vhd", ".vhdl"),
    "Vue": (".vue",),
    "XML": (".xml", ".xsd", ".xsl", ".xslt", ".svg", ".plist"),
    "YAML": (".yaml", ".yml"),
    "Zig": (".zig",),
    "reStructuredText": (".rst",),
}

LANGUAGE_FILENAMES: dict[str, str] = {
    "makefile": "Makefile",
    "gnumakefile": "Makefile",
    "dockerfile": "Dockerfile",
    "cmakelists.txt": "CMake",
    "rakefile": "Ruby",
    "gemfile": "Ruby",
    "build.gradle": "Groovy",
    "jenkinsfile": "Groovy",
}

EXTENSION_TO_LANGUAGE: dict[str, str] = {ext: lang for lang, exts in LANGUAGE_EXTENSIONS.items() for ext in exts}
ALL_LANGUAGES: tuple[str, ...] = tuple(sorted(LANGUAGE_EXTENSIONS))


def language_of(path: str) -> str | None:
    """The language of a repository path, or None when neither its name nor its extension is known."""
    pure = PurePosixPath(path)
    name = pure.name.lower()
    if name in LANGUAGE_FILENAMES:
        return LANGUAGE_FILENAMES[name]
    if name.startswith("dockerfile."):
        return "Dockerfile"
    return EXTENSION_TO_LANGUAGE.get(pure.suffix.lower())
