"""The instrument-side SCPI parser: mnemonics, optional nodes, units, chaining, path rule, errors."""

import pytest

from labpgt.instruments.simulated.scpi import (
    ERROR_QUEUE_LENGTH,
    Boolean,
    Choice,
    Numeric,
    QuotedString,
    ScpiInstrument,
    add_setting,
    expand_pattern,
    mnemonic_forms,
)


class Toy(ScpiInstrument):
    """A small instrument with a representative command table."""

    identity = "labpgt,Toy,0,1"

    def declare_commands(self, table):
        self.frequency = 1e9
        self.power = 0.0
        self.start = 1e9
        self.stop = 2e9
        self.rbw = 1e6
        self.points = 401
        self.output = False
        self.delay = 0.0
        self.field = 0.0
        self.format = ("ASCii", None)
        self.label = ""
        add_setting(
            table, self, "[:SOURce]:FREQuency[:CW|:FIXed]", "frequency", Numeric("HZ", 250e3, 20e9, default=1e9)
        )
        add_setting(table, self, "[:SOURce]:POWer[:LEVel][:IMMediate][:AMPLitude]", "power", Numeric("DBM", -135, 25))
        add_setting(table, self, "[:SENSe]:FREQuency:STARt", "start", Numeric("HZ", 0, 26.5e9))
        add_setting(table, self, "[:SENSe]:FREQuency:STOP", "stop", Numeric("HZ", 0, 26.5e9))
        add_setting(table, self, "[:SENSe]:BANDwidth|BWIDth[:RESolution]", "rbw", Numeric("HZ", 10, 5e6))
        add_setting(table, self, "[:SENSe]:SWEep:POINts", "points", Numeric("", 101, 8192, integer=True))
        add_setting(table, self, ":OUTPut[:STATe]", "output", Boolean())
        add_setting(table, self, ":DELay", "delay", Numeric("S", 0, 10))
        add_setting(table, self, ":FIELd", "field", Numeric("MT", 0, 300))
        add_setting(table, self, ":LABel", "label", QuotedString())
        table.add(
            ":FORMat[:TRACe][:DATA]",
            lambda kind, bits: setattr(self, "format", (kind, bits)),
            lambda: "%s,%s" % self.format,
            (Choice(["ASCii", "REAL"]), Numeric("", 1, 64, integer=True, optional=True)),
        )


@pytest.fixture
def toy():
    return Toy()


def ask(instrument, message):
    return instrument.handle(message).decode()


def errors(instrument):
    found = []
    while True:
        entry = ask(instrument, "SYST:ERR?").strip()
        if entry.startswith("+0"):
            return found
        found.append(int(entry.split(",")[0]))


def test_mnemonic_forms_and_pattern_expansion():
    assert mnemonic_forms("FREQuency") == ("FREQ", "FREQUENCY")
    assert mnemonic_forms("TRACE1") == ("TRACE1",)
    headers = expand_pattern("[:SENSe]:BANDwidth|BWIDth[:RESolution]")
    assert ("BWID",) in headers and ("SENSE", "BANDWIDTH", "RES") in headers
    # [ |SOUR|SOURCE] x FREQ|FREQUENCY x [ |CW|FIX|FIXED]
    assert len(expand_pattern("[:SOURce]:FREQuency[:CW|:FIXed]")) == 3 * 2 * 4


@pytest.mark.parametrize(
    "command",
    [
        ":FREQ 2e9",
        ":FREQUENCY 2e9",
        "freq 2e9",
        ":sOuRcE:fReQ:cW 2E9",
        "SOUR:FREQ:FIX 2e9",
        ":SOURCE:FREQUENCY:CW 2000000000",
        "  :FREQ   2e9  ",
        ":FREQ 2 GHz",
        ":FREQ 2GHZ",
        ":FREQ 2000 MHz",
        ":FREQ 2e6 kHz",
        ":FREQ 2e9 Hz;",
    ],
)
def test_long_short_any_case_optional_nodes_units(toy, command):
    assert ask(toy, command) == ""
    assert toy.frequency == pytest.approx(2e9)
    assert errors(toy) == []


def test_units_and_prefixes_for_each_kind(toy):
    ask(toy, ":POW -10 dBm;:DEL 25 ms;:FIEL 0.05 T;:BAND 300 kHz")
    assert (toy.power, toy.delay, toy.field, toy.rbw) == pytest.approx((-10, 0.025, 50, 300e3))
    ask(toy, ":DEL 7 us;:FIEL 12.5 mT")
    assert (toy.delay, toy.field) == pytest.approx((7e-6, 12.5))
    ask(toy, ":DEL 40 ns")
    assert toy.delay == pytest.approx(40e-9)


def test_min_max_default(toy):
    ask(toy, ":FREQ MAX")
    assert toy.frequency == 20e9
    ask(toy, ":FREQ minimum")
    assert toy.frequency == 250e3
    ask(toy, ":FREQ DEF")
    assert toy.frequency == 1e9
    ask(toy, ":POW DEF")  # no default declared for power
    assert errors(toy) == [-104]


def test_booleans_strings_and_several_parameters(toy):
    for text, value in [("ON", True), ("off", False), ("1", True), ("0", False)]:
        ask(toy, ":OUTP " + text)
        assert toy.output is value
    assert ask(toy, ":OUTP?") == "0\n"
    ask(toy, ':LAB "a;b,c"')  # separators inside quotes are data
    assert toy.label == "a;b,c"
    ask(toy, ":FORM REAL,32")
    assert toy.format == ("REAL", 32)
    ask(toy, ":FORMAT:TRACE:DATA asc")
    assert toy.format == ("ASCii", None)
    assert errors(toy) == []


def test_chained_queries_are_joined_with_semicolons(toy):
    assert ask(toy, "*IDN?;:FREQ 3 GHz;:FREQ?;:OUTP?") == "labpgt,Toy,0,1;+3.00000000000E+09;0\n"
    assert ask(toy, ":POW?;") == "+0.00000000000E+00\n"
    assert ask(toy, ";;:FREQ 1 GHz;;") == ""
    assert errors(toy) == []


def test_header_path_rule(toy):
    ask(toy, ":SENS:FREQ:STAR 1.5 GHz;STOP 2.5 GHz")  # STOP continues at SENS:FREQ
    assert (toy.start, toy.stop) == (1.5e9, 2.5e9)
    ask(toy, ":SENS:FREQ:STAR 1 GHz;*IDN?;STOP 3 GHz")  # common commands keep the level
    assert (toy.start, toy.stop) == (1e9, 3e9)
    assert ask(toy, "SENS:FREQ:STAR 1 GHz;:SWE:POIN 201;POIN?") == "201\n"
    assert errors(toy) == []
    ask(toy, ":SENS:FREQ:STAR 1 GHz;POW 3")  # POW is not under SENS:FREQ
    assert toy.power == 0
    assert errors(toy) == [-113]


@pytest.mark.parametrize(
    "command, code",
    [
        (":FOO 1", -113),
        (":FREQ:BOGUS?", -113),
        (":FREQ", -109),
        (":FREQ 1e12", -222),
        (":POW 30 dBm", -222),
        (":FREQ banana", -104),
        (":FREQ 'text'", -104),
        (":FREQ 1 dBm", -131),
        (":SWE:POIN 201 Hz", -131),
        (":FREQ 1e9,2e9", -108),
        (":OUTP MAYBE", -224),
        (":FORM JSON", -224),
        (":FR@Q 1", -102),
        (":FREQ::CW 1", -102),
    ],
)
def test_errors_have_standard_numbers_and_texts(toy, command, code):
    before = toy.frequency
    ask(toy, command)
    entry = ask(toy, ":SYSTem:ERRor:NEXT?").strip()
    assert entry.startswith(f'{code},"')
    assert toy.frequency == before
    assert ask(toy, "SYST:ERR?") == '+0,"No error"\n'


def test_error_texts(toy):
    ask(toy, ":FOO")
    assert ask(toy, "SYST:ERR?") == '-113,"Undefined header"\n'
    ask(toy, ":FREQ 1e12")
    assert ask(toy, "syst:err?") == '-222,"Data out of range"\n'


def test_error_discards_rest_of_message_but_not_the_next(toy):
    # the message held a query: it is answered (empty) at once rather than left to time out
    assert ask(toy, ":FOO;:FREQ 5 GHz;*IDN?") == "\n"
    assert toy.frequency == 1e9
    assert ask(toy, "*IDN?") == "labpgt,Toy,0,1\n"
    assert ask(toy, ":FOO;:FREQ 5 GHz") == ""  # no query, no answer


def test_failed_query_answers_what_it_has_at_once_and_queues_the_error(toy):
    assert ask(toy, ":FREQ?;:NOPE?") == "+1.00000000000E+09\n"
    assert ask(toy, ":NOPE?") == "\n"
    assert ask(toy, "*ESR?") == "32\n"
    assert errors(toy) == [-113, -113]
    toy.answer_failed_queries = False  # the hardware's silence
    assert ask(toy, ":NOPE?") == ""
    assert errors(toy) == [-113]


class Markers(ScpiInstrument):
    """Numeric suffixes: markers 1-4, a window/trace pair, an optional suffixed node."""

    def declare_commands(self, table):
        self.x = {}
        table.add(
            ":CALCulate:MARKer<1-4>:X",
            lambda n, x: self.x.__setitem__(n, x),
            lambda n: "%g" % self.x.get(n, 0.0),
            (Numeric("HZ"),),
        )
        table.add(":DISPlay:WINDow<n>:TRACe<1-6>:MODE?", query=lambda w, t: f"{w},{t}")
        table.add("[:SENSe]:DETector[:FUNCtion<1-6>]?", query=lambda t: str(t))


def test_numeric_suffixes_default_to_one_and_are_range_checked():
    markers = Markers()
    ask(markers, ":CALC:MARK2:X 3 GHz;:CALCULATE:MARKER:X 1 GHz")
    assert markers.x == {2: 3e9, 1: 1e9}
    assert ask(markers, ":CALC:MARK2:X?;X?;:calc:mark1:x?") == "3e+09;3e+09;1e+09\n"  # path rule keeps MARK2
    assert ask(markers, ":DISP:WIND2:TRAC3:MODE?;:DISP:WIND:TRAC:MODE?") == "2,3;1,1\n"
    assert ask(markers, ":DET?;:SENS:DET:FUNC4?") == "1;4\n"
    assert ask(markers, ":CALC:MARK5:X?") == "\n"
    assert errors(markers) == [-114]
    ask(markers, ":CALC:MARKX:X 1;:FREQ1 1")
    assert errors(markers) == [-113]


def test_status_model(toy):
    assert ask(toy, "*STB?") == "0\n"
    ask(toy, ":NOPE")
    assert int(ask(toy, "*STB?")) == 4  # error queue not empty
    ask(toy, "*ESE 32;*SRE 32")
    assert int(ask(toy, "*STB?")) == 4 | 32 | 64  # ESB (CME enabled) and its service request
    assert ask(toy, "*ESE?;*SRE?") == "32;32\n"
    assert int(ask(toy, "*ESR?")) == 32
    assert int(ask(toy, "*STB?")) == 4  # *ESR? cleared the event register
    ask(toy, "*CLS;*OPC")
    assert ask(toy, "*ESR?") == "1\n"  # operation complete
    assert ask(toy, "*IDN?;*STB?") == "labpgt,Toy,0,1;16\n"  # MAV: an answer is waiting
    toy.operation.pulse(8)
    assert ask(toy, ":STAT:OPER:COND?;:STAT:OPER?;:STAT:OPER?") == "0;8;0\n"
    ask(toy, ":STAT:OPER:ENAB 8;:STAT:QUES:ENAB 2")
    toy.operation.pulse(8)
    toy.questionable.set_condition(2)
    assert int(ask(toy, "*STB?")) == 8 | 128
    assert ask(toy, ":STAT:QUES:COND?;:STAT:QUES:EVEN?") == "2;2\n"
    ask(toy, ":STAT:PRES")
    assert ask(toy, ":STAT:OPER:ENAB?;:STAT:OPER:PTR?;:STAT:OPER:NTR?") == "0;32767;0\n"


def test_queue_overflow_and_cls(toy):
    for _ in range(ERROR_QUEUE_LENGTH + 10):
        ask(toy, ":NOPE")
    assert ask(toy, "SYST:ERR:COUN?") == f"{ERROR_QUEUE_LENGTH}\n"
    codes = errors(toy)
    assert len(codes) == ERROR_QUEUE_LENGTH
    assert codes[-1] == -350 and set(codes[:-1]) == {-113}
    ask(toy, ":NOPE;*CLS")
    ask(toy, ":NOPE")
    ask(toy, "*CLS")
    assert errors(toy) == []


def test_common_commands(toy):
    assert ask(toy, "*OPC?") == "1\n"
    ask(toy, ":NOPE")
    assert ask(toy, "*ESR?") == "32\n"
    assert ask(toy, "*ESR?") == "0\n"
    ask(toy, "*CLS")
    assert ask(toy, "*idn?") == "labpgt,Toy,0,1\n"


def test_binary_garbage_and_unterminated_quote_do_not_raise(toy):
    assert toy.handle(b"\xff\xfe\x00garbage;;;\x01") == b""
    assert toy.handle(':LAB "unterminated') == b""
    assert set(errors(toy)) <= {-102, -113}
    assert ask(toy, "*IDN?") == "labpgt,Toy,0,1\n"
