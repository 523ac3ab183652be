using System.Globalization;
using System.Text.Json;
using LoraPS.Tokenization;
using Xunit;

namespace LoraPS.Tests.Tokenization;

/// <summary>
/// A tiny GPT-2-style tokenizer.json built here: the 256 byte-level symbols (id = byte value) plus a few merges
/// whose results are worked out by hand in each test.
/// </summary>
public class ByteLevelBpeTokenizerTests
{
    private const int EndOfText = 270;
    private const int Mask = 271;

    // GPT-2's bytes_to_unicode, written out independently of LoraPS.
    private static char Sym(int b) =>
        (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)
            ? (char)b
            : (char)(256 + Enumerable.Range(0, b).Count(x => !((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE && x <= 0xFF))));

    private static readonly string G = Sym(' ').ToString();   // 'Ġ'

    // Rank order matters: earlier merges apply first.
    private static readonly (string Left, string Right)[] Merges =
    [
        (G, "t"), ("h", "e"), (G + "t", "he"), ("l", "l"), ("ll", "o"), ("H", "e"), ("He", "llo"),
        (G, "w"), ("o", "r"), (G + "w", "or"), (G + "wor", "l"), (G + "worl", "d"),
        ("1", "2"), (Sym(0x82).ToString(), "a"),
    ];

    private const string Qwen2Pattern =
        @"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    private static string BuildTokenizerJson(bool qwenSplit, bool arrayMerges)
    {
        var vocab = new Dictionary<string, int>();
        for (int b = 0; b < 256; b++)
        {
            vocab[Sym(b).ToString()] = b;
        }
        // 256 Ġt, 257 he, 258 Ġthe, 259 ll, 260 llo, 261 He, 262 Hello, 263 Ġw, 264 or, 265 Ġwor, 266 Ġworl,
        // 267 Ġworld, 268 "12", 269 (byte 0x82)+"a".
        foreach ((string l, string r) in Merges)
        {
            vocab[l + r] = vocab.Count;
        }
        object preTokenizer = qwenSplit
            ? new
            {
                type = "Sequence",
                pretokenizers = new object[]
                {
                    new { type = "Split", pattern = new { Regex = Qwen2Pattern }, behavior = "Isolated", invert = false },
                    new { type = "ByteLevel", add_prefix_space = false, trim_offsets = false, use_regex = false },
                },
            }
            : new { type = "ByteLevel", add_prefix_space = false, trim_offsets = true, use_regex = true };
        var root = new
        {
            version = "1.0",
            truncation = (object?)null,
            padding = (object?)null,
            added_tokens = new[]
            {
                new { id = EndOfText, content = "<|endoftext|>", single_word = false, lstrip = false, rstrip = false, normalized = false, special = true },
                // RoBERTa's <mask> swallows the space before it.
                new { id = Mask, content = "<mask>", single_word = false, lstrip = true, rstrip = false, normalized = false, special = true },
            },
            normalizer = (object?)null,
            pre_tokenizer = preTokenizer,
            post_processor = new { type = "ByteLevel", add_prefix_space = true, trim_offsets = false, use_regex = true },
            decoder = new { type = "ByteLevel", add_prefix_space = true, trim_offsets = true, use_regex = true },
            model = new
            {
                type = "BPE",
                dropout = (object?)null,
                unk_token = (object?)null,
                continuing_subword_prefix = "",
                end_of_word_suffix = "",
                fuse_unk = false,
                byte_fallback = false,
                vocab,
                merges = arrayMerges
                    ? Merges.Select(m => (object)new[] { m.Left, m.Right }).ToArray()
                    : Merges.Select(m => (object)(m.Left + " " + m.Right)).ToArray(),
            },
        };
        return JsonSerializer.Serialize(root);
    }

    private static TextTokenizer Load(bool qwenSplit = false, bool arrayMerges = false, string? config = null)
    {
        using var folder = new TempModelFolder();
        folder.Write("tokenizer.json", BuildTokenizerJson(qwenSplit, arrayMerges));
        if (config is not null)
        {
            folder.Write("config.json", config);
        }
        return TextTokenizer.Load(folder.Path);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Gpt2Style_ExactIds(bool arrayMerges)
    {
        TextTokenizer t = Load(arrayMerges: arrayMerges);
        Assert.Equal("Byte-level BPE (tokenizer.json)", t.Kind);
        Assert.Equal(272, t.VocabSize);
        Assert.Equal([262, 267], t.Encode("Hello world"));                 // "Hello" "Ġworld"
        Assert.Equal([262, 258, 267], t.Encode("Hello the world"));        // "Ġthe" = "Ġt"+"he", not "Ġ"+"the"
        Assert.Equal(["Hello", G + "the", G + "world"], t.Tokenize("Hello the world"));
        // "héllo 🙂": é is C3 A9; 🙂 is F0 9F 99 82 after a space; "llo" still merges.
        Assert.Equal([104, 0xC3, 0xA9, 260, 32, 0xF0, 0x9F, 0x99, 0x82], t.Encode("héllo \U0001F642"));
        Assert.Equal([268, '3'], t.Encode("123"));                         // GPT-2 keeps a digit run together
        Assert.Equal([262, EndOfText, 262], t.Encode("Hello<|endoftext|>Hello"));
        Assert.Equal([262, Mask, 'w', 264, 'l', 'd'], t.Encode("Hello <mask>world"));
        Assert.Equal([262, 32, EndOfText], t.Encode("Hello <|endoftext|>"));   // no lstrip: the space stays
    }

    [Fact]
    public void Gpt2Style_RoundTripsAnyText()
    {
        TextTokenizer t = Load();
        foreach (string text in new[] { "Hello world", "  multiple   spaces\n\ttabs\r\n", "héllo 日本語 Привет", "\U0001F642\U0001F680", "a\u0000b", "" })
        {
            Assert.Equal(text, t.Decode(t.Encode(text)));
        }
        Assert.Equal("Hello", t.Decode(t.Encode("Hello<|endoftext|>")));
        Assert.Equal("Hello<|endoftext|>", t.Decode(t.Encode("Hello<|endoftext|>"), skipSpecialTokens: false));
    }

    [Fact]
    public void Gpt2Style_SpecialTokensComeFromConfigJson_AndNoBosIsAdded()
    {
        TextTokenizer t = Load(config: $$"""{"bos_token_id": {{EndOfText}}, "eos_token_id": {{EndOfText}}}""");
        Assert.Equal(EndOfText, t.BosTokenId);
        Assert.Equal([EndOfText], t.EosTokenIds);
        Assert.False(t.AddBosToken);
        Assert.Null(t.PadTokenId);
        Assert.Equal(t.Encode("Hello world", addSpecialTokens: false), t.Encode("Hello world"));
        EncodedPair pair = t.EncodePair("Hello", "world");
        Assert.Equal([262, 'w', 264, 'l', 'd'], pair.Ids);          // "world" alone has no 'Ġ': w "or" l d
        Assert.Equal([0, 1, 1, 1, 1], pair.TokenTypeIds);
    }

    [Fact]
    public void Qwen2Style_UsesTheSplitRegexFromTheFile()
    {
        TextTokenizer t = Load(qwenSplit: true);
        Assert.Equal("Byte-level BPE (tokenizer.json)", t.Kind);
        Assert.Equal([262, 267], t.Encode("Hello world"));
        Assert.Equal(['1', '2', '3'], t.Encode("123"));                   // \p{N}: one digit per word
        // Oniguruma reads [^\r\n\p{L}\p{N}]?\p{L}+ over code points, so "🙂abc" is one word and the 0x82 byte of
        // the emoji merges with "a". A UTF-16 regex would cut the surrogate pair off and never merge.
        Assert.Equal([0xF0, 0x9F, 0x99, 269, 'b', 'c'], t.Encode("\U0001F642abc"));
        Assert.Equal("\U0001F642abc", t.Decode(t.Encode("\U0001F642abc")));
    }

    [Fact]
    public void OnigCompatibleRegex_MatchesCodePointsOutsideTheBmp()
    {
        var letters = new OnigCompatibleRegex(@"\p{L}+", "test");
        // 𝐀𝐁 are letters (U+1D400, U+1D401), two UTF-16 units each.
        Assert.Equal([(0, 4), (5, 1)], letters.Matches("\U0001D400\U0001D401 c"));
        foreach (UnicodeCategory category in Enum.GetValues<UnicodeCategory>().Where(c => c != UnicodeCategory.Surrogate))
        {
            Assert.Equal(category, CharUnicodeInfo.GetUnicodeCategory(OnigCompatibleRegex.StandIn(category)));
        }
    }
}
