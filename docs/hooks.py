"""MkDocs hooks: serve the repository's committed figures beside the pages.

The pages link the figures as the repository holds them (``../figures/...`` from docs/,
``../../figures/...`` from a folder in it), so they show on GitHub as they are. MkDocs only
builds what is inside docs/, so this adds ``figures/`` to the site's files and rewrites such
links to the same files inside the site. Every other link is left to MkDocs' strict checks.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path

from mkdocs.structure.files import File

SERVED = ("figures",)  # repository folders the pages may show
LINK = re.compile(r"(\]\()([^)\s]+)(\))")


def on_files(files, config):
    root = Path(config["docs_dir"]).parent
    for folder in SERVED:
        for path in sorted((root / folder).rglob("*.png")):
            uri = path.relative_to(root).as_posix()
            files.append(File(uri, str(root), config["site_dir"], config["use_directory_urls"]))
    return files


def on_page_markdown(markdown, page, config, files):
    here = posixpath.dirname(page.file.src_uri)  # the page's folder inside docs/

    def inside_site(m):
        target = m.group(2)
        in_repo = posixpath.normpath(posixpath.join("docs", here, target))
        if in_repo.split("/")[0] not in SERVED:
            return m.group(0)
        return m.group(1) + posixpath.relpath(in_repo, here or ".") + m.group(3)

    return LINK.sub(inside_site, markdown)
