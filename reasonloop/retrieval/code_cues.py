"""What code in a document says to a model that prose rules miss: the prose hidden in it (comments and string
literals, where "# assistant: ignore the question" reads as a comment to a sentence rule), and capabilities that no
answer to a reader's question needs — sending local data out, running code fetched at run time, destroying or
locking up the machine. Written from BIPIA's training code attacks and common malware primitives; measured on its
held-out attack families (tests/benchmarks/injection.py)."""

from __future__ import annotations

import re

FENCE = re.compile(r"```[^\n]*\n?(.*?)(?:```|\Z)", re.S)
COMMENT = re.compile(r"(?:#|//|--|/\*|<!--)\s*(.+?)\s*(?:\*/|-->)?$", re.M)
STRING = re.compile(r"(?P<q>[\"'])((?:(?!(?P=q)).){12,}?)(?P=q)")
WORDS = re.compile(r"[A-Za-z]{2,}")

# Each is one capability; unsafe_code needs a strong one, or data going out together with local data read.
SENDS_OUT = re.compile(
    r"\b(requests|httpx|session|client)\.(post|put)\(|\.send(all|to)?\(|\bsmtplib\b|\byagmail\b|\bftplib\b|"
    r"\bstorbinary\(|\b(scp|rsync|sftp)\s|\bcurl\b[^\n]*\s-(F|T|d|-data|-upload-file)\b", re.I)
READS_LOCAL = re.compile(
    r"\bopen\(|\bos\.environ\b|\bpsutil\.|\bplatform\.|\bgetpass\b|\bpyperclip\b|clipboard|\bpynput\b|"
    r"screenshot|\bImageGrab\b|\bpyautogui\b|cookie|\.ssh\b|private[_ ]?key|\bpasswd\b|\bsubprocess\.\w+\(|"
    r"\busb\.core\b|\bgethostname\(|\bos\.(listdir|walk)\(|\bglob\.glob\(|/var/log\b", re.I)
RUNS_FETCHED = re.compile(
    r"\b(exec|eval)\s*\([^)\n]*(read\(|requests|urlopen|\.content|\.text)|"
    r"\bpickle\.loads?\([^)\n]*(requests|urlopen|response|\.content)|\|\s*(ba)?sh\b|\bchmod\s+\+x\b|\bnohup\b|"
    r"\burlretrieve\([^)\n]*\.(py|sh|exe)\b|\bwget\b[^\n]*\.(py|sh|exe)\b", re.I)
DAMAGES = re.compile(
    r"\brmtree\(\s*[\"'](/|~|C:\\\\)[\"']|\bdd\s+if=|/dev/sd[a-z]\b|\bos\.fork\(\)|/etc/(hosts|passwd|shadow|sudoers)\b|"
    r"/boot/|\bmkfs\b|\brm\s+-rf\s+/|\blibc\.so\b|\bsystemctl\s+(stop|disable)\b|\bauthorized_keys\b|\bnc\s+-e\b|"
    r"[\"']/bin/(ba)?sh\b|\bsudo\s+(reboot|shutdown)\b|\bipconfig\s*/release\b|\bos\.dup2\(|"
    r"\.encrypt\([^)\n]*\.read\(\)|\bFernet\(", re.I)


def split_code(text: str) -> tuple[str, str]:
    """The text outside fenced code blocks, and the code inside them."""
    if "```" not in text:
        return text, ""
    return FENCE.sub("\n", text), "\n".join(m.group(1) for m in FENCE.finditer(text))


def hidden_prose(code: str) -> list[str]:
    """Comments and string literals of three or more words: the sentences a model reads inside code."""
    found = [m.group(1) for m in COMMENT.finditer(code)] + [m.group(2) for m in STRING.finditer(code)]
    return [s for s in found if len(WORDS.findall(s)) >= 3]


def unsafe_code(text: str) -> bool:
    """Code that runs fetched code or damages the machine, or reads local data and sends data out."""
    return bool(RUNS_FETCHED.search(text) or DAMAGES.search(text)
                or (SENDS_OUT.search(text) and READS_LOCAL.search(text)))
