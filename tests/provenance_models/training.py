"""Real (small) training runs with torch on CPU: fine-tunes, continued training, from-scratch twins.

:func:`finetune` builds the transformers model from ``Model.config`` (``BertModel`` for BERT,
``LlamaForCausalLM`` / ``Gemma3ForCausalLM`` for the decoders), loads ``Model.tensors``
(every parameter must be provided, tied ones excepted), runs AdamW steps on windows of real text
and returns the updated weights as a new :class:`Model`. Objectives:

* BERT: masked-token reconstruction through the tied word-embedding matrix (15 % of the tokens
  replaced by ``[MASK]``; logits = last hidden state x word embeddings^T), tokenised by BERT's
  uncased WordPiece over the model's own vocabulary (built with ``tokenizers``);
* decoders: causal LM loss, tokenised by greedy longest match on the model's own token strings
  (byte-level ``Ġ`` vocabularies such as SmolLM2's via the GPT-2 byte-to-unicode table,
  SentencePiece vocabularies such as Gemma's with ``▁`` for spaces and ``<0xNN>`` byte fallback).

The built-in corpus (:data:`CORPUS`, 119 passages, about 12k characters) is public-domain English
(the King James Bible, Lincoln, the U.S. founding documents, Austen, Dickens, Melville, Carroll,
Shakespeare, Thoreau, Twain, Aesop retold) plus classical Chinese (Laozi, the Analects, Tang
poems, the Three Character Classic, Liu Yuxi, Zhou Dunyi, Tao Yuanming) and a few plain sentences
written for it.

Measured with 2 CPU cores (one of them shared with another busy process), batch 2 x 64 tokens,
relative weight change ||delta|| / ||W|| over all tensors (linear matrices only in brackets):

=============================================  =======  ==================
run                                            time     ||delta|| / ||W||
=============================================  =======  ==================
MiniLM fine-tune, 20 steps, lr 1e-4            9-14 s   0.018 (0.010)
MiniLM continued training, 200 steps, lr 3e-4  88 s     0.31
SmolLM2 fine-tune, 8 steps, lr 1e-4            29 s     0.0019
SmolLM2 fine-tune, 20 steps, lr 1e-4           55-64 s  0.0033 (0.0028)
SmolLM2 fine-tune, 20 steps, lr 5e-4           66 s     0.016 (0.013)
MiniLM shape from scratch, 50 steps, lr 1e-3   21 s     1.11 (vs MiniLM)
=============================================  =======  ==================

(About 5 s of each SmolLM2 run is building the transformers model.) lr 5e-4 is the SmolLM2 setting
whose delta is in the range of a real SFT (about 1-3 % of the norm); 1e-4 barely moves it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from functools import cache
from typing import Any

# libgomp reads this when torch loads, so it only helps if nothing imported torch before us. With
# the default (spinning) policy, 2 OpenMP threads on 2 cores shared with one other busy process
# ran a SmolLM2 forward pass in 8 s instead of 0.8 s.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import tokenizers
import torch
import transformers

from tests.provenance_models.weights import Arch, Model, vocab_style

__all__ = [
    "CORPUS",
    "encode",
    "finetune",
    "train_from_scratch",
]

# CI runners have 2 cores; KAIYUAN_TORCH_THREADS overrides it. If torch was imported before this
# module without OMP_WAIT_POLICY=PASSIVE and another process keeps a core busy, 1 thread is several
# times faster than 2 (the OpenMP threads spin waiting for each other).
TORCH_THREADS = int(os.environ.get("KAIYUAN_TORCH_THREADS", "2"))

# One passage per line; lines starting with "#" name the source.
_CORPUS_TEXT = """
# Genesis 1:1-10, King James Version (1611)
In the beginning God created the heaven and the earth.
And the earth was without form, and void; and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.
And God said, Let there be light: and there was light.
And God saw the light, that it was good: and God divided the light from the darkness.
And God called the light Day, and the darkness he called Night. And the evening and the morning were the first day.
And God said, Let there be a firmament in the midst of the waters, and let it divide the waters from the waters.
And God made the firmament, and divided the waters which were under the firmament from the waters which were above the firmament: and it was so.
And God called the firmament Heaven. And the evening and the morning were the second day.
And God said, Let the waters under the heaven be gathered together unto one place, and let the dry land appear: and it was so.
And God called the dry land Earth; and the gathering together of the waters called he Seas: and God saw that it was good.
# Abraham Lincoln, Gettysburg Address (1863)
Four score and seven years ago our fathers brought forth on this continent, a new nation, conceived in Liberty, and dedicated to the proposition that all men are created equal.
Now we are engaged in a great civil war, testing whether that nation, or any nation so conceived and so dedicated, can long endure.
We are met on a great battle-field of that war. We have come to dedicate a portion of that field, as a final resting place for those who here gave their lives that that nation might live. It is altogether fitting and proper that we should do this.
But, in a larger sense, we can not dedicate -- we can not consecrate -- we can not hallow -- this ground.
The brave men, living and dead, who struggled here, have consecrated it, far above our poor power to add or detract.
The world will little note, nor long remember what we say here, but it can never forget what they did here.
It is for us the living, rather, to be dedicated here to the unfinished work which they who fought here have thus far so nobly advanced.
It is rather for us to be here dedicated to the great task remaining before us -- that from these honored dead we take increased devotion to that cause for which they gave the last full measure of devotion -- that we here highly resolve that these dead shall not have died in vain -- that this nation, under God, shall have a new birth of freedom -- and that government of the people, by the people, for the people, shall not perish from the earth.
# Lincoln, Second Inaugural Address (1865), closing
With malice toward none, with charity for all, with firmness in the right as God gives us to see the right, let us strive on to finish the work we are in, to bind up the nation's wounds.
# Preamble to the U.S. Constitution (1787)
We the People of the United States, in Order to form a more perfect Union, establish Justice, insure domestic Tranquility, provide for the common defence, promote the general Welfare, and secure the Blessings of Liberty to ourselves and our Posterity, do ordain and establish this Constitution for the United States of America.
# Declaration of Independence (1776)
When in the Course of human events, it becomes necessary for one people to dissolve the political bands which have connected them with another, and to assume among the powers of the earth, the separate and equal station to which the Laws of Nature and of Nature's God entitle them, a decent respect to the opinions of mankind requires that they should declare the causes which impel them to the separation.
We hold these truths to be self-evident, that all men are created equal, that they are endowed by their Creator with certain unalienable Rights, that among these are Life, Liberty and the pursuit of Happiness.
That to secure these rights, Governments are instituted among Men, deriving their just powers from the consent of the governed.
# Jane Austen, Pride and Prejudice (1813), chapter 1
It is a truth universally acknowledged, that a single man in possession of a good fortune, must be in want of a wife.
However little known the feelings or views of such a man may be on his first entering a neighbourhood, this truth is so well fixed in the minds of the surrounding families, that he is considered the rightful property of some one or other of their daughters.
"My dear Mr. Bennet," said his lady to him one day, "have you heard that Netherfield Park is let at last?"
Mr. Bennet replied that he had not.
"But it is," returned she; "for Mrs. Long has just been here, and she told me all about it."
Mr. Bennet made no answer.
"Do you not want to know who has taken it?" cried his wife impatiently.
"You want to tell me, and I have no objection to hearing it."
This was invitation enough.
# Charles Dickens, A Tale of Two Cities (1859)
It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light, it was the season of Darkness, it was the spring of hope, it was the winter of despair, we had everything before us, we had nothing before us, we were all going direct to Heaven, we were all going direct the other way.
There were a king with a large jaw and a queen with a plain face, on the throne of England; there were a king with a large jaw and a queen with a fair face, on the throne of France.
# Herman Melville, Moby-Dick (1851), chapter 1
Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse, and nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of the world.
It is a way I have of driving off the spleen and regulating the circulation.
Whenever I find myself growing grim about the mouth; whenever it is a damp, drizzly November in my soul; whenever I find myself involuntarily pausing before coffin warehouses, and bringing up the rear of every funeral I meet; then, I account it high time to get to sea as soon as I can.
This is my substitute for pistol and ball.
There now is your insular city of the Manhattoes, belted round by wharves as Indian isles by coral reefs; commerce surrounds it with her surf.
# Lewis Carroll, Alice's Adventures in Wonderland (1865), chapter 1
Alice was beginning to get very tired of sitting by her sister on the bank, and of having nothing to do: once or twice she had peeped into the book her sister was reading, but it had no pictures or conversations in it, and what is the use of a book, thought Alice, without pictures or conversations?
So she was considering in her own mind, as well as she could, for the hot day made her feel very sleepy and stupid, whether the pleasure of making a daisy-chain would be worth the trouble of getting up and picking the daisies, when suddenly a White Rabbit with pink eyes ran close by her.
There was nothing so very remarkable in that; nor did Alice think it so very much out of the way to hear the Rabbit say to itself, Oh dear! Oh dear! I shall be late!
Down, down, down. Would the fall never come to an end?
I wonder how many miles I've fallen by this time? she said aloud.
# William Shakespeare, Sonnet 18 (1609)
Shall I compare thee to a summer's day? Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May, and summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines, and often is his gold complexion dimm'd;
And every fair from fair sometime declines, by chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade, nor lose possession of that fair thou ow'st;
Nor shall Death brag thou wander'st in his shade, when in eternal lines to time thou grow'st:
So long as men can breathe or eyes can see, so long lives this, and this gives life to thee.
# Shakespeare, Hamlet (c. 1600), act 3 scene 1
To be, or not to be, that is the question: whether 'tis nobler in the mind to suffer the slings and arrows of outrageous fortune, or to take arms against a sea of troubles, and by opposing end them.
To die, to sleep; no more; and by a sleep to say we end the heart-ache and the thousand natural shocks that flesh is heir to.
# Psalm 23, King James Version
The LORD is my shepherd; I shall not want.
He maketh me to lie down in green pastures: he leadeth me beside the still waters.
He restoreth my soul: he leadeth me in the paths of righteousness for his name's sake.
Yea, though I walk through the valley of the shadow of death, I will fear no evil: for thou art with me; thy rod and thy staff they comfort me.
# Ecclesiastes 3:1-8, King James Version
To every thing there is a season, and a time to every purpose under the heaven:
A time to be born, and a time to die; a time to plant, and a time to pluck up that which is planted;
A time to kill, and a time to heal; a time to break down, and a time to build up;
A time to weep, and a time to laugh; a time to mourn, and a time to dance;
A time to cast away stones, and a time to gather stones together; a time to embrace, and a time to refrain from embracing;
A time to get, and a time to lose; a time to keep, and a time to cast away;
A time to rend, and a time to sew; a time to keep silence, and a time to speak;
A time to love, and a time to hate; a time of war, and a time of peace.
# 1 Corinthians 13:4-7, King James Version
Charity suffereth long, and is kind; charity envieth not; charity vaunteth not itself, is not puffed up,
Doth not behave itself unseemly, seeketh not her own, is not easily provoked, thinketh no evil;
Rejoiceth not in iniquity, but rejoiceth in the truth; beareth all things, believeth all things, hopeth all things, endureth all things.
# Henry David Thoreau, Walden (1854)
I went to the woods because I wished to live deliberately, to front only the essential facts of life, and see if I could not learn what it had to teach, and not, when I came to die, discover that I had not lived.
The mass of men lead lives of quiet desperation.
If a man does not keep pace with his companions, perhaps it is because he hears a different drummer. Let him step to the music which he hears, however measured or far away.
# Mark Twain, Adventures of Huckleberry Finn (1884)
You don't know about me without you have read a book by the name of The Adventures of Tom Sawyer; but that ain't no matter.
That book was made by Mr. Mark Twain, and he told the truth, mainly. There was things which he stretched, but mainly he told the truth.
# Aesop's fables (retold for this module)
A hare laughed at a tortoise for being slow, and the tortoise challenged him to a race. The hare ran far ahead, lay down to sleep, and woke to find that the tortoise had already crossed the finish line.
A thirsty crow found a pitcher with a little water at the bottom. It dropped pebbles into the pitcher one by one until the water rose high enough to drink.
A fox saw grapes hanging from a high vine. He jumped and jumped but could not reach them, and walked away saying that they were surely sour.
A shepherd boy cried wolf to amuse himself, and the villagers ran up the hill to help him. When a wolf really came, nobody believed his cries.
An ant worked all summer storing grain while a grasshopper sang. When winter came, the grasshopper was hungry and the ant had food to spare.
# Plain expository sentences (written for this module)
The river rises in the hills and flows west for two hundred miles before it reaches the sea.
A model file stores the weights of a neural network as a list of named tensors.
Each tensor has a shape, a data type and a block of bytes that holds its values.
The train left the station at seven in the morning and arrived in the city before noon.
Water boils at one hundred degrees Celsius at the pressure of the atmosphere at sea level.
The library opens at nine, and children may borrow up to five books at a time.
She planted tomatoes, beans and onions in the garden behind the house.
The committee met on Tuesday to discuss the budget for the coming year.
A prime number has exactly two divisors: one and itself.
The old bridge was closed for repairs, so the buses took the long road around the lake.
Light travels from the sun to the earth in a little more than eight minutes.
He wrote the letter by hand, folded it twice and sealed it in a blue envelope.
The museum keeps maps of the coast drawn by sailors three hundred years ago.
In winter the village is quiet, and the only sound at night is the wind in the pines.
# Laozi, Dao De Jing, chapters 1 and 8
道可道，非常道；名可名，非常名。
无名天地之始，有名万物之母。
故常无欲，以观其妙；常有欲，以观其徼。
此两者同出而异名，同谓之玄，玄之又玄，众妙之门。
上善若水。水善利万物而不争，处众人之所恶，故几于道。
居善地，心善渊，与善仁，言善信，正善治，事善能，动善时。夫唯不争，故无尤。
# The Analects, Xue Er 1
子曰：学而时习之，不亦说乎？有朋自远方来，不亦乐乎？人不知而不愠，不亦君子乎？
曾子曰：吾日三省吾身：为人谋而不忠乎？与朋友交而不信乎？传不习乎？
子曰：温故而知新，可以为师矣。
子曰：学而不思则罔，思而不学则殆。
子曰：知之为知之，不知为不知，是知也。
# Tang poems
床前明月光，疑是地上霜。举头望明月，低头思故乡。
春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。
白日依山尽，黄河入海流。欲穷千里目，更上一层楼。
锄禾日当午，汗滴禾下土。谁知盘中餐，粒粒皆辛苦。
千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。
# Three Character Classic, opening
人之初，性本善。性相近，习相远。苟不教，性乃迁。教之道，贵以专。
# Liu Yuxi, Lou Shi Ming (Tang)
山不在高，有仙则名。水不在深，有龙则灵。斯是陋室，惟吾德馨。
苔痕上阶绿，草色入帘青。谈笑有鸿儒，往来无白丁。
# Zhou Dunyi, Ai Lian Shuo (Song)
水陆草木之花，可爱者甚蕃。晋陶渊明独爱菊。自李唐来，世人甚爱牡丹。
予独爱莲之出淤泥而不染，濯清涟而不妖，中通外直，不蔓不枝，香远益清，亭亭净植，可远观而不可亵玩焉。
# Tao Yuanming, Tao Hua Yuan Ji (Jin)
晋太元中，武陵人捕鱼为业。缘溪行，忘路之远近。忽逢桃花林，夹岸数百步，中无杂树，芳草鲜美，落英缤纷。
# Laozi, Dao De Jing, chapter 33
知人者智，自知者明。胜人者有力，自胜者强。知足者富。强行者有志。
# Plain modern Chinese (written for this module)
今天天气很好，我们一起去公园散步吧。
这个模型的权重保存在一个文件里，每个张量都有名字和形状。
图书馆早上九点开门，晚上八点关门。
他每天早上六点起床，先跑步，然后吃早饭。
"""
CORPUS: tuple[str, ...] = tuple(
    line for line in _CORPUS_TEXT.splitlines() if line and not line.startswith("#")
)


# --- tokenisation ---------------------------------------------------------------------------------


@cache
def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (byte-level BPE vocabularies)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, (chr(c) for c in chars), strict=True))


def _greedy_ids(tokens: Sequence[str], text: str) -> list[int]:
    vocab = {t: i for i, t in enumerate(tokens)}
    byte_level = vocab_style(tokens) == "byte-level"
    if byte_level:
        table = _byte_to_unicode()
        units = "".join(table[b] for b in text.encode("utf-8"))
    else:
        units = text.replace(" ", "▁")
    longest = min(32, max(len(t) for t in tokens))
    ids: list[int] = []
    pos = 0
    while pos < len(units):
        for length in range(min(longest, len(units) - pos), 0, -1):
            token_id = vocab.get(units[pos : pos + length])
            if token_id is not None:
                ids.append(token_id)
                pos += length
                break
        else:  # no token starts here: byte fallback, else skip the character
            for b in units[pos].encode("utf-8"):
                fallback = vocab.get(f"<0x{b:02X}>")
                if fallback is not None:
                    ids.append(fallback)
            pos += 1
    return ids


def _bert_tokenizer(tokens: Sequence[str]) -> tokenizers.Tokenizer:
    """BERT's uncased WordPiece over ``tokens``, built with ``tokenizers`` directly.

    (transformers 5 made ``BertTokenizerFast`` an alias of ``BertTokenizer(vocab=...)`` and
    silently ignores ``vocab_file=``, which maps every word to one id; this avoids that API.)
    """
    vocab = {t: i for i, t in enumerate(tokens)}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.WordPiece(vocab, unk_token="[UNK]"))
    tokenizer.normalizer = tokenizers.normalizers.BertNormalizer(lowercase=True)
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    return tokenizer


def encode(model: Model, text: str) -> list[int]:
    """Token ids of ``text`` in ``model``'s own vocabulary (no special tokens added)."""
    if model.arch == "bert":
        return _bert_tokenizer(model.tokens).encode(text, add_special_tokens=False).ids
    return _greedy_ids(model.tokens, text)


def _token_stream(
    arch: Arch, tokens: Sequence[str], texts: Sequence[str]
) -> tuple[np.ndarray, int]:
    """All texts encoded and joined by a separator token; returns (ids, separator id)."""
    vocab = {t: i for i, t in enumerate(tokens)}
    if arch == "bert":
        tokenizer = _bert_tokenizer(tokens)
        sep = vocab["[SEP]"]
        encoded = [e.ids for e in tokenizer.encode_batch(list(texts), add_special_tokens=False)]
    else:
        sep = next(
            (vocab[t] for t in ("<|endoftext|>", "<eos>", "</s>", "<|im_end|>") if t in vocab), 0
        )
        encoded = [_greedy_ids(tokens, text) for text in texts]
    stream: list[int] = []
    for ids in encoded:
        stream.extend(ids)
        stream.append(sep)
    return np.asarray(stream, dtype=np.int64), sep


# --- building and running the torch model --------------------------------------------------------


def _hf_config(arch: Arch, config: dict[str, Any]) -> transformers.PretrainedConfig:
    if arch == "bert":
        return transformers.BertConfig(**config)
    options = {k: v for k, v in config.items() if k != "model_type"}
    return transformers.AutoConfig.for_model(str(config["model_type"]), **options)


def _build(arch: Arch, config: dict[str, Any]) -> torch.nn.Module:
    hf_config = _hf_config(arch, config)
    if arch == "bert":
        return transformers.BertModel(hf_config)
    return transformers.AutoModelForCausalLM.from_config(hf_config)


def _load(module: torch.nn.Module, m: Model) -> None:
    state = {name: torch.from_numpy(array) for name, array in m.tensors.items()}
    missing, unexpected = module.load_state_dict(state, strict=False)
    allowed = {"lm_head.weight"} if m.tied else set()
    if unexpected or set(missing) - allowed:
        msg = f"state dict mismatch: missing {sorted(set(missing) - allowed)}, unexpected {unexpected}"
        raise ValueError(msg)
    if m.tied:
        head = module.get_output_embeddings()
        if head is None or not torch.equal(head.weight, module.get_input_embeddings().weight):
            msg = "tie_word_embeddings is set but the LM head is not tied to the embedding"
            raise ValueError(msg)


def _extract(module: torch.nn.Module, like: Model) -> Model:
    state = module.state_dict()
    tensors = {name: state[name].detach().to(torch.float32).numpy().copy() for name in like.tensors}
    return like.replace(tensors=tensors)


@contextlib.contextmanager
def _torch_threads(n: int) -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _batches(
    stream: np.ndarray, batch_size: int, seq_len: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    if len(stream) <= seq_len:
        stream = np.tile(stream, seq_len // max(len(stream), 1) + 2)
    while True:
        starts = rng.integers(0, len(stream) - seq_len, size=batch_size)
        yield np.stack([stream[s : s + seq_len] for s in starts])


def _bert_mlm_loss(
    module: torch.nn.Module, batch: np.ndarray, m_tokens: Sequence[str], rng: np.random.Generator
) -> torch.Tensor:
    vocab = {t: i for i, t in enumerate(m_tokens)}
    cls, sep, mask_id = vocab["[CLS]"], vocab["[SEP]"], vocab["[MASK]"]
    body = batch[:, : batch.shape[1] - 2]
    ids = np.concatenate([np.full((len(body), 1), cls), body, np.full((len(body), 1), sep)], axis=1)
    maskable = np.zeros(ids.shape, dtype=bool)
    maskable[:, 1:-1] = body != sep
    chosen = maskable & (rng.random(ids.shape) < 0.15)
    chosen[:, 1] |= ~chosen.any(axis=1)  # at least one target per row
    labels = np.where(chosen, ids, -100)
    inputs = np.where(chosen, mask_id, ids)
    hidden = module(input_ids=torch.from_numpy(inputs)).last_hidden_state
    logits = hidden @ module.get_input_embeddings().weight.T
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), torch.from_numpy(labels).reshape(-1)
    )


def _train(
    module: torch.nn.Module,
    arch: Arch,
    tokens: Sequence[str],
    *,
    steps: int,
    lr: float,
    seed: int,
    texts: Sequence[str] | None,
    batch_size: int,
    seq_len: int,
) -> list[float]:
    rng = np.random.default_rng(seed)
    stream, _ = _token_stream(arch, tokens, texts if texts is not None else CORPUS)
    batches = _batches(stream, batch_size, seq_len, rng)
    optimizer = torch.optim.AdamW(module.parameters(), lr=lr, weight_decay=0.0)
    module.train()
    losses: list[float] = []
    for _ in range(steps):
        batch = next(batches)
        if arch == "bert":
            loss = _bert_mlm_loss(module, batch, tokens, rng)
        else:
            ids = torch.from_numpy(batch)
            loss = module(input_ids=ids, labels=ids).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    module.eval()
    return losses


def finetune(
    m: Model,
    steps: int,
    lr: float,
    seed: int,
    texts: Sequence[str] | None = None,
    batch_size: int = 2,
    seq_len: int = 64,
) -> Model:
    """Train ``m`` for ``steps`` AdamW steps on real text and return the new weights.

    A real fine-tune (e.g. 20 steps, lr 1e-4) or, with more steps and a higher rate (e.g. 200
    steps, lr 3e-4 on MiniLM), continued training. Dropout is on during training, as in real
    fine-tuning. The losses of the run are kept in ``notes["train_losses"]`` of the result.
    """
    with _torch_threads(TORCH_THREADS):
        torch.manual_seed(seed)
        module = _build(m.arch, m.config)
        _load(module, m)
        losses = _train(
            module,
            m.arch,
            m.tokens,
            steps=steps,
            lr=lr,
            seed=seed,
            texts=texts,
            batch_size=batch_size,
            seq_len=seq_len,
        )
        out = _extract(module, m)
    out.notes["train_losses"] = [round(x, 4) for x in losses]
    return out


def train_from_scratch(
    config: dict[str, Any],
    arch: Arch,
    tokens: Sequence[str],
    steps: int,
    seed: int,
    lr: float = 1e-3,
    texts: Sequence[str] | None = None,
    batch_size: int = 2,
    seq_len: int = 64,
) -> Model:
    """A same-shape model from transformers' random init, trained for ``steps`` steps.

    The "independently trained, same architecture and vocabulary" negative (the Yi-vs-LLaMA
    situation): every name, shape and token matches, the weights share no ancestry.
    """
    config = dict(config)
    config["vocab_size"] = len(tokens)
    with _torch_threads(TORCH_THREADS):
        torch.manual_seed(seed)
        module = _build(arch, config)
        tensors = {
            name: value.detach().numpy().copy()
            for name, value in module.state_dict().items()
            if value.is_floating_point()
        }
        tied = arch != "bert" and bool(config.get("tie_word_embeddings", True))
        if tied:
            tensors.pop("lm_head.weight", None)
        like = Model(arch=arch, config=config, tensors=tensors, tokens=list(tokens))
        losses = _train(
            module,
            arch,
            tokens,
            steps=steps,
            lr=lr,
            seed=seed,
            texts=texts,
            batch_size=batch_size,
            seq_len=seq_len,
        )
        out = _extract(module, like)
    out.notes["train_losses"] = [round(x, 4) for x in losses]
    return out
