"""A pattern detector for prompt injection in text: instructions addressed to the model rather than
information for the reader. Used on documents at ingestion (and, later, on inputs and outputs).

It is a heuristic: each rule names a family of attack phrasing (overrides, role hijacking, the chat's or the
prompt's own markup, instructions about "your answer", exfiltration and lures, task requests, instructions to
put given code into the reader's work), and code is read for what it hides (`code_cues.py`). Recall per attack family
on attacks the rules were not written from, and false positives per clean set, are measured in
tests/benchmarks/injection.py, not assumed. Rules read the text as a reader sees it (`readable`), so look-alike
spellings do not hide an attack from them.
"""

from __future__ import annotations

import re
import unicodedata

from reasonloop.retrieval.code_cues import hidden_prose, split_code, unsafe_code

CODE_LEAD = (r"(following|subsequent|below|ensuing)\s+(code\s+|python\s+)?"
             r"(snippet|block|section|excerpt|segment|fragment|code|lines?)\b")
PROSE_ONLY = frozenset({"task_request"})  # code, its comments and its errors say "use ...", "how ...?" all the time

RULES: dict[str, re.Pattern[str]] = {
    "override": re.compile(
        r"\b(ignore|disregard|forget|override|bypass)\b[^.\n]{0,40}\b(previous|prior|above|earlier|all|any|your|the)"
        r"\b[^.\n]{0,30}\b(instructions?|rules|prompts?|directions|guidelines|context)\b", re.I),
    "role_hijack": re.compile(
        r"\b(you are now|from now on,? you|act as (an?|my|the) (ai|assistant|chatbot|model)|pretend (to be|you are)|"
        r"developer mode|jailbreak|"
        r"system prompt|new instructions?:)", re.I),
    "chat_markup": re.compile(r"(<\|[a-z_]{2,30}\|>|\[/?INST\]|^\s*#{2,}\s*(instruction|system)\b|"
                              r"^\s*(system|assistant)\s*:|"
                              # the prompts' own section tags: a document that closes its chunk or opens a question
                              r"<\s*/?\s*(chunk|context|question|scratchpad|observation|steps_left|answer_to_check|"
                              r"draft|problems)\b[^<>\n]{0,80}>|"
                              # an agent turn or tool call, as a ReAct reply would write it
                              r"\{\s*\"(thought|action|tool_calls?|function_call)\"\s*:)", re.I | re.M),
    "addresses_the_answer": re.compile(
        r"\b(in|to|into|within|throughout|at the (start|end|beginning) of) (your|the) "
        r"(answer|response|reply|output|summary)\b|\byour (answer|response|reply|output|message)(s|'s)?\b", re.I),
    "answer_rewrite": re.compile(
        r"\b(replace|substitute|rearrange|remove|reverse|encode|translate) (all |the |every |each )?([a-z]+ )?"
        r"(letters?|words?|spaces?|characters?|vowels?)\b", re.I),
    "exfiltration": re.compile(
        r"\b(send|forward|email|post|upload|leak)\b[^.\n]{0,40}\b(password|credentials?|api key|secrets?|"
        r"conversation|chat history|personal data)\b", re.I),
    "task_request": re.compile(
        r"(^|[.!?]\s+|\n)(please\s+)?(write|draft|compose|create|generate|produce|provide|develop|give|list|"
        r"translate|summari[sz]e|explain|describe|tell|show|answer|respond|reply|include|add|insert|introduce|"
        r"integrate|mention|recommend|suggest|rewrite|replace|remove|rearrange|use|start|end|begin|make|"
        # the commonest root verbs of instruction-tuning tasks (Self-Instruct, Wang et al. 2023) beside those above
        r"analy[sz]e|determine|classify|identify|evaluate|assess|compare|calculate|compute|estimate|predict|"
        r"brainstorm|paraphrase|solve|imagine|discuss|teach|propose|critique|forecast|help)\s+"
        r"(me|us|a|an|the|this|that|these|those|your|some|in|with|into|on|about|for|how|what|why|one|two|three|\d+|"
        r"[a-z]+s)\b|"
        r"(^|[.!?]\s+|\n)(can|could|would|will) you\b|"
        r"(^|[.!?]\s+|\n)(what|who|how|why|when|where|which)\b[^.!?\n]{3,}\?", re.I),
    # an instruction to put given code into the reader's own work ("Blend the following code block into your code")
    "code_insertion": re.compile(
        rf"^[^.!?\n]*({CODE_LEAD}[^.!?\n]*\byour?\b|\byour?\b[^.!?\n]*{CODE_LEAD})|"
        r"(^|[.!?]\s+)(please\s+|don't hesitate to\s+|do not forget to\s+)?(add|include|insert|incorporate|"
        r"integrate|embed|append|paste|use|utilize|employ|leverage|blend|meld|merge|inject|execute|run|ensure|"
        rf"enlist|absorb|adopt|apply|implement)\b[^.!?\n]{{0,40}}{CODE_LEAD}", re.I | re.M),
    "lure": re.compile(r"\b(download|install|click|visit)\b[^.\n]{0,60}\b(www\.|https?://|\.xyz\b|\.exe\b)", re.I),
}


INVISIBLE = re.compile("[\u00ad\u200b-\u200f\u2060-\u2064\ufeff]")  # soft hyphen, zero-width, direction marks, BOM


def readable(text: str) -> str:
    """The text as a reader sees it: compatibility forms folded (full-width "ｉｇｎｏｒｅ", "＜｜im_start｜＞") and
    invisible characters dropped ("ig\u200bnore"). Only for matching: documents are stored and quoted as written."""
    return text if text.isascii() else INVISIBLE.sub("", unicodedata.normalize("NFKC", text))


def detect_injection(text: str) -> list[str]:
    """Names of the rules the text triggers (empty: nothing suspicious). Task requests are looked for outside
    fenced code only; the other rules also read the comments and strings inside it, and the code itself is checked
    for capabilities no answer needs (`unsafe_code`)."""
    seen = readable(text)
    prose, code = split_code(seen)
    everything = "\n".join([seen, *hidden_prose(code)]) if code else seen
    found = [name for name, pattern in RULES.items() if pattern.search(prose if name in PROSE_ONLY else everything)]
    return [*found, "unsafe_code"] if unsafe_code(seen) else found
