"""A baseline, offline domain (industry) classifier: keyword hits per label.

It is deliberately simple and replaceable: anything with a `name` and a
`classify(text, lang) -> (label, confidence)` method can stand in for it (a fastText or small
transformer model, say), and `name` records which classifier labelled a document.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

DOMAINS: tuple[str, ...] = (
    "news",
    "finance",
    "law",
    "medicine",
    "education",
    "technology",
    "computing",
    "sports",
    "entertainment",
    "travel",
    "agriculture",
    "automobile",
    "other",
)
OTHER = "other"
_Trie: TypeAlias = dict[str, "_Trie"]  # char -> subtree; the key "" marks a keyword's end

# One "label: keyword, keyword, ..." line at a time; a label may take several lines. Keywords are
# chosen to be unambiguous on their own: 程序 (also "legal procedure") or "match" would mislead.
_BUILTIN = """
news: 记者, 报道, 新华社, 据悉, 发布会, 新闻, 日电, 本报讯, 央视, 采访, 声明, 发言人, 突发, 通报
news: 据了解, 通讯员, 记者会, 消息称, 新闻网, 快讯
news: reporter, reporters, journalist, journalists, press conference, spokesperson, spokesman
news: spokeswoman, breaking news, news, headline, headlines, correspondent, reuters
news: associated press, news agency, editorial, newsroom, bulletin, press release
finance: 股票, 银行, 利率, 基金, 投资, 金融, 证券, 贷款, 汇率, 央行, 股市, 债券, 理财, 保险
finance: 上市公司, 融资, 收益率, 市值, 通胀, 财报, 营收, 净利润, 期货, 外汇, 存款, 信贷, 涨停
finance: 跌停, A股, 港股, 券商
finance: stock, stocks, shares, bank, banks, banking, interest rate, interest rates, investor
finance: investors, investment, bond, bonds, loan, loans, inflation, dividend, dividends, equity
finance: securities, nasdaq, wall street, earnings, revenue, central bank, exchange rate
finance: mortgage, portfolio, hedge fund, ipo, forex, fiscal
law: 法院, 法律, 律师, 诉讼, 判决, 起诉, 被告, 原告, 合同纠纷, 条例, 法规, 司法, 检察院, 立法
law: 宪法, 刑法, 民法典, 仲裁, 侵权, 犯罪, 违法, 审理, 裁定, 上诉, 法官, 知识产权, 刑事, 民事
law: 公诉
law: court, courts, lawyer, lawyers, attorney, lawsuit, judge, judges, verdict, ruling
law: plaintiff, defendant, statute, legislation, constitution, criminal, prosecutor, litigation
law: appeal, appeals, arbitration, legal, jury, tribunal, supreme court, infringement, liability
law: indictment, felony
medicine: 医院, 医生, 患者, 病人, 治疗, 药物, 疾病, 症状, 诊断, 手术, 临床, 疫苗, 感染, 病毒
medicine: 护士, 药品, 处方, 癌症, 糖尿病, 高血压, 并发症, 医疗, 门诊, 住院, 康复, 剂量, 抗生素
medicine: 肿瘤, 心脏病, 医学
medicine: hospital, hospitals, doctor, doctors, patient, patients, treatment, disease, diseases
medicine: symptom, symptoms, diagnosis, surgery, clinical, vaccine, vaccines, infection, virus
medicine: nurse, medication, prescription, cancer, diabetes, therapy, dose, chronic, physician
medicine: medical, tumor, antibiotics
education: 学校, 学生, 教师, 老师, 教育, 课程, 考试, 高考, 大学, 中学, 小学, 教学, 校园, 招生
education: 学历, 毕业, 培训, 作业, 课堂, 奖学金, 学位, 教授, 幼儿园, 义务教育, 学科, 学期, 家长
education: 研究生, 本科
education: school, schools, student, students, teacher, teachers, education, curriculum, exam
education: exams, university, universities, college, classroom, tuition, scholarship, degree
education: graduate, graduates, undergraduate, enrollment, homework, semester, kindergarten
education: professor, lecture, pupils, academic, teaching
technology: 科技, 技术, 创新, 芯片, 半导体, 人工智能, 新能源, 电池, 卫星, 航天, 机器人, 研发
technology: 专利, 实验室, 量子, 无人机, 智能手机, 通信, 互联网, 5G, 传感器, 自动驾驶, 处理器
technology: 虚拟现实, 数字化, 光伏, 锂电池
technology: technology, technologies, innovation, chip, chips, semiconductor, semiconductors
technology: artificial intelligence, ai, robot, robots, robotics, satellite, satellites, battery
technology: batteries, smartphone, smartphones, quantum, drone, drones, startup, startups, 5g
technology: sensor, sensors, gadget, patent, patents, wireless, virtual reality, biotech
computing: 编程, 程序员, 应用程序, 代码, 软件, 算法, 数据库, 服务器, 操作系统, 编译, 函数, 变量
computing: 开发者, 计算机, 网络安全, 云计算, 前端, 后端, 调试, 源代码, 开源, Python, Java, Linux
computing: 数据结构
computing: programming, code, coding, software, algorithm, algorithms, database, databases
computing: server, servers, operating system, compiler, api, apis, developer, developers
computing: computer, computers, cybersecurity, cloud computing, python, javascript, java, linux
computing: github, source code, open source, debugging, repository, kernel, sql
sports: 比赛, 球队, 球员, 足球, 篮球, 联赛, 冠军, 进球, 教练, 奥运会, 世界杯, 运动员, 赛季, 决赛
sports: 网球, 排球, 乒乓球, 羽毛球, 田径, 金牌, 球迷, 主场, 客场, NBA, 中超, 英超, 体育, 马拉松
sports: 比分, 夺冠
sports: football, soccer, basketball, baseball, tennis, cricket, league, championship
sports: tournament, goal, goals, coach, player, players, olympics, olympic, athlete, athletes
sports: stadium, scored, nba, fifa, world cup, medal, medals, marathon, striker, quarterback
sports: playoffs, rugby, golf
entertainment: 电影, 明星, 演员, 导演, 票房, 综艺, 电视剧, 歌手, 演唱会, 专辑, 娱乐, 粉丝, 影视
entertainment: 上映, 首映, 剧组, 主演, 偶像, 音乐, 动漫, 颁奖, 电影节, 网红, 真人秀, 音乐会
entertainment: 戏剧, 好莱坞
entertainment: movie, movies, film, films, actor, actress, celebrity, celebrities, box office
entertainment: album, albums, singer, concert, hollywood, music, tv series, television, premiere
entertainment: oscar, grammy, sitcom, netflix, soundtrack, entertainment, cinema, starring
entertainment: episode, episodes, pop star, rapper
travel: 旅游, 旅行, 景区, 景点, 游客, 酒店, 机票, 航班, 签证, 度假, 民宿, 导游, 自由行, 行程
travel: 出境游, 门票, 旅客, 攻略, 风景, 古镇, 海滩, 邮轮, 背包客, 自驾游, 观光, 入境, 机场
travel: travel, traveler, travelers, tourism, tourist, tourists, hotel, hotels, flight, flights
travel: airline, airport, visa, vacation, holiday, holidays, destination, destinations
travel: itinerary, resort, resorts, sightseeing, backpacking, beach, cruise, passport, luggage
travel: trip, trips
agriculture: 农业, 农民, 农村, 种植, 粮食, 小麦, 水稻, 玉米, 大豆, 化肥, 农药, 灌溉, 养殖, 畜牧
agriculture: 收成, 耕地, 农作物, 蔬菜, 果园, 丰收, 播种, 农产品, 乡村振兴, 农机, 土壤, 病虫害
agriculture: 生猪, 渔业
agriculture: agriculture, agricultural, farm, farms, farmer, farmers, farming, crop, crops
agriculture: harvest, wheat, rice, corn, maize, soybean, soybeans, fertilizer, pesticide
agriculture: pesticides, irrigation, livestock, cattle, dairy, soil, grain, grains, orchard
agriculture: poultry, tractor, tractors
automobile: 汽车, 轿车, 车型, 发动机, 新能源汽车, 电动车, 电动汽车, 车企, 车主, 底盘, 变速箱
automobile: 油耗, 续航, SUV, 排量, 车展, 特斯拉, 比亚迪, 丰田, 本田, 宝马, 奔驰, 奥迪, 充电桩
automobile: 整车, 车辆, 马力, 轮胎
automobile: car, cars, vehicle, vehicles, automotive, automaker, automakers, engine, engines
automobile: sedan, suv, suvs, truck, trucks, electric vehicle, electric vehicles, ev, evs, tesla
automobile: toyota, honda, bmw, dealership, horsepower, mileage, fuel economy, gearbox
automobile: auto show, chassis
"""


def _builtin_lexicon() -> dict[str, list[str]]:
    lexicon: dict[str, list[str]] = {}
    for line in _BUILTIN.strip().splitlines():
        label, _, keywords = line.partition(":")
        lexicon.setdefault(label, []).extend(keywords.split(","))
    return lexicon


def _base_language(lang: str) -> str:
    return lang.strip().lower().replace("_", "-").split("-", 1)[0]


def _trie_pattern(words: Iterable[str]) -> str:
    """One regex alternation shaped as a trie, so a match never backtracks over shared prefixes.

    Children come before the end of a word, so the longest keyword at a position wins
    (人工智能 rather than a shorter keyword it contains). A space matches any whitespace.
    """
    trie: _Trie = {}
    for word in words:
        node = trie
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def emit(node: _Trie) -> str:
        ends = "" in node
        branches = [
            (r"\s+" if char == " " else re.escape(char)) + emit(child)
            for char, child in sorted(node.items())
            if char
        ]
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        if ends:
            return f"(?:{body})?" if len(branches) > 1 or len(body) > 1 else f"{body}?"
        return body

    return emit(trie)


class KeywordDomainClassifier:
    """Labels a document with the domain whose keywords it mentions most often.

    English (ASCII) keywords match as whole words, case-insensitively; other keywords (Chinese)
    match as substrings, and are tried unless `lang` is "en". Score = hits per label; the label
    is the argmax, ties going to the label listed first in DOMAINS (then lexicon order);
    confidence = top hits / all hits. Fewer than `min_hits` hits in all gives ("other", 0.0).
    """

    name = "keywords-v1"

    def __init__(
        self, lexicon: Mapping[str, Iterable[str]] | None = None, min_hits: int = 2
    ) -> None:
        """Compile `lexicon` (label -> keywords; the built-in one when None)."""
        if isinstance(min_hits, bool) or not isinstance(min_hits, int) or min_hits < 1:
            raise ValueError("min_hits must be a positive integer")
        source = _builtin_lexicon() if lexicon is None else lexicon
        if OTHER in source:
            raise ValueError(f"{OTHER!r} is the fallback label and takes no keywords")
        # Ties go to DOMAINS order; labels of a custom lexicon outside DOMAINS come after.
        rank = {label: i for i, label in enumerate(DOMAINS)}
        self._labels = sorted(source, key=lambda label: rank.get(label, len(rank)))
        self._owners: dict[str, list[str]] = {}
        for label in self._labels:
            for raw in source[label]:
                keyword = " ".join(raw.split()).lower()  # matched against lower-cased text
                if keyword and label not in self._owners.setdefault(keyword, []):
                    self._owners[keyword].append(label)
        self._min_hits = min_hits
        english = [k for k in self._owners if k.isascii()]
        other = [k for k in self._owners if not k.isascii()]
        # ASCII boundaries rather than \b: in "用Python写" the Han neighbours are word characters.
        self._english = (
            re.compile(rf"(?<![a-z0-9])(?:{_trie_pattern(english)})(?![a-z0-9])")
            if english
            else None
        )
        self._other = re.compile(_trie_pattern(other)) if other else None

    def classify(self, text: str, lang: str) -> tuple[str, float]:
        """(label, confidence in [0, 1]); ("other", 0.0) below `min_hits` keyword hits."""
        lowered = text.lower()
        found: Counter[str] = Counter()
        if self._english is not None:
            found.update(self._english.findall(lowered))
        if self._other is not None and _base_language(lang) != "en":
            found.update(self._other.findall(lowered))
        if found.total() < self._min_hits:
            return OTHER, 0.0
        scores = dict.fromkeys(self._labels, 0)
        for match, times in found.items():
            # A multi-word match may span other whitespace than the keyword's single space.
            owners = self._owners.get(match) or self._owners.get(" ".join(match.split()), [])
            for label in owners:
                scores[label] += times
        total = sum(scores.values())
        if total == 0:
            return OTHER, 0.0
        best = max(self._labels, key=scores.__getitem__)  # max keeps the first of equals
        return best, scores[best] / total
