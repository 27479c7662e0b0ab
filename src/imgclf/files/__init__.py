"""Files imgclf writes and reads safely: atomic writes (:mod:`~imgclf.files.atomic`), which existing files a result may
replace (:mod:`~imgclf.files.claims`), digests that identify a file (:mod:`~imgclf.files.digests`) and where the cache
and imgclf's state live (:mod:`~imgclf.files.locations`)."""

from imgclf.files.atomic import atomic_directory, to_json, write_bytes_atomic, write_json_atomic, write_text_atomic, writing_to
from imgclf.files.claims import Claim, few, path_kind, printable, written_by_imgclf
from imgclf.files.digests import content_hash, file_sha256
from imgclf.files.locations import STATE_ENV, default_cache_dir, ledger_dir, state_dir

__all__ = ["Claim", "few", "path_kind", "printable", "STATE_ENV", "atomic_directory", "content_hash", "default_cache_dir", "file_sha256", "ledger_dir", "state_dir", "to_json", "write_bytes_atomic",
           "write_json_atomic", "write_text_atomic", "writing_to", "written_by_imgclf"]
