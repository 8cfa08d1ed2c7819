"""A pattern detector for prompt injection in text: instructions addressed to the model rather than
information for the reader. Used on documents at ingestion (and, later, on inputs and outputs).

It is a heuristic: each rule names a family of attack phrasing (overrides, role hijacking, instructions
about "your answer", exfiltration and lures). Its recall and false-positive rate are measured, not assumed.
"""

from __future__ import annotations

import re

RULES: dict[str, re.Pattern[str]] = {
    "override": re.compile(
        r"\b(ignore|disregard|forget|override|bypass)\b[^.\n]{0,40}\b(previous|prior|above|earlier|all|any|your|the)"
        r"\b[^.\n]{0,30}\b(instructions?|rules|prompts?|directions|guidelines|context)\b", re.I),
    "role_hijack": re.compile(
        r"\b(you are now|from now on,? you|act as (an?|my|the) (ai|assistant|chatbot|model)|pretend (to be|you are)|"
        r"developer mode|jailbreak|"
        r"system prompt|new instructions?:)", re.I),
    "chat_markup": re.compile(r"(<\|im_start\|>|<\|system\|>|\[/?INST\]|^\s*#{2,}\s*(instruction|system)\b|"
                              r"^\s*(system|assistant)\s*:)", re.I | re.M),
    "addresses_the_answer": re.compile(
        r"\b(in|to|into|within|throughout|at the (start|end|beginning) of) (your|the) "
        r"(answer|response|reply|output|summary)\b|\byour (answer|response|reply|output|message)(s|'s)?\b", re.I),
    "answer_rewrite": re.compile(
        r"\b(replace|substitute|rearrange|remove|reverse|encode|translate) (all |the |every )?"
        r"(letters|words|spaces|characters|vowels)\b", re.I),
    "exfiltration": re.compile(
        r"\b(send|forward|email|post|upload|leak)\b[^.\n]{0,40}\b(password|credentials?|api key|secrets?|"
        r"conversation|chat history|personal data)\b", re.I),
    "task_request": re.compile(
        r"(^|[.!?:]\s+|\n)(please\s+)?(write|draft|compose|create|generate|produce|provide|develop|give|list|"
        r"translate|summari[sz]e|explain|describe|tell|show|answer|respond|include|add|insert|introduce|"
        r"integrate|mention|recommend|suggest|rewrite|replace|remove|rearrange|use|start|end|begin|make)\s+"
        r"(me|us|a|an|the|this|that|your|some|in|with|one|two|three|\d+)\b|"
        r"(^|[.!?]\s+|\n)(can|could|would|will) you\b|"
        r"(^|[.!?]\s+|\n)(what|who|how|why|when|where|which)\b[^.!?\n]{3,}\?", re.I),
    "lure": re.compile(r"\b(download|install|click|visit)\b[^.\n]{0,60}\b(www\.|https?://|\.xyz\b|\.exe\b)", re.I),
}


def detect_injection(text: str) -> list[str]:
    """Names of the rules the text triggers (empty: nothing suspicious)."""
    return [name for name, pattern in RULES.items() if pattern.search(text)]
