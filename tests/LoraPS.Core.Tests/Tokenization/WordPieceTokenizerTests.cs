using LoraPS.Tokenization;
using Xunit;

namespace LoraPS.Tests.Tokenization;

/// <summary>all-MiniLM-L6-v2 (uncased BERT WordPiece): tokenizer.json and vocab.txt must agree with each other and
/// with ids looked up by line number in vocab.txt.</summary>
public class WordPieceTokenizerTests
{
    private static readonly string[] Vocab = File.ReadAllLines(Path.Combine(TokenizerFixtures.MiniLm, "vocab.txt"));

    private static int Id(string token)
    {
        int id = Array.IndexOf(Vocab, token);
        Assert.True(id >= 0, $"'{token}' is not in vocab.txt");
        return id;
    }

    private static TextTokenizer LoadJson() => TextTokenizer.Load(TokenizerFixtures.MiniLm);

    private static TextTokenizer LoadVocabTxt()
    {
        using var folder = TempModelFolder.CopyOf(TokenizerFixtures.MiniLm, "vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "config.json");
        return TextTokenizer.Load(folder.Path);
    }

    public static TheoryData<string> Paths => ["tokenizer.json", "vocab.txt"];

    private static TextTokenizer Load(string path) => path == "vocab.txt" ? LoadVocabTxt() : LoadJson();

    [Theory]
    [MemberData(nameof(Paths))]
    public void HelloWorld_IsClsHelloCommaWorldBangSep(string path)
    {
        TextTokenizer t = Load(path);
        Assert.Equal($"WordPiece ({path})", t.Kind);
        Assert.Equal(30522, t.VocabSize);
        Assert.Equal([Id("[CLS]"), Id("hello"), Id(","), Id("world"), Id("!"), Id("[SEP]")], t.Encode("Hello, world!"));
        Assert.Equal([Id("hello"), Id(","), Id("world"), Id("!")], t.Encode("Hello, world!", addSpecialTokens: false));
        Assert.Equal("hello, world!", t.Decode(t.Encode("Hello, world!")));
        Assert.Equal("[CLS] hello, world! [SEP]", t.Decode(t.Encode("Hello, world!"), skipSpecialTokens: false));
        Assert.Equal((Id("[PAD]"), Id("[UNK]")), (t.PadTokenId, t.UnkTokenId));
        Assert.Null(t.BosTokenId);
        Assert.False(t.AddBosToken);
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void Lowercases_StripsAccents_AndSplitsUnknownWordsIntoPieces(string path)
    {
        TextTokenizer t = Load(path);
        Assert.Equal(t.Encode("hello world"), t.Encode("HELLO World"));
        Assert.Equal(t.Encode("naive cafe"), t.Encode("Naïve Café"));

        foreach (string word in new[] { "unaffable", "tokenization", "huggingface" })
        {
            string[] pieces = ReferenceWordPiece(word);
            Assert.True(pieces.Length > 1 && pieces.Skip(1).All(p => p.StartsWith("##")), string.Join(" ", pieces));
            Assert.Equal(pieces.Select(Id), t.Encode(word, addSpecialTokens: false));
            Assert.Equal(word, t.Decode(t.Encode(word)));
        }
        Assert.Equal([Id("[UNK]")], t.Encode("\U0001F642", addSpecialTokens: false));
        Assert.Equal([Id("日"), Id("本")], t.Encode("日本", addSpecialTokens: false));
    }

    [Theory]
    [MemberData(nameof(Paths))]
    public void EncodePair_GivesClsASepBSep_WithTypeIds(string path)
    {
        TextTokenizer t = Load(path);
        EncodedPair pair = t.EncodePair("How old are you?", "I am six.");
        int[] a = [Id("how"), Id("old"), Id("are"), Id("you"), Id("?")];
        int[] b = [Id("i"), Id("am"), Id("six"), Id(".")];
        Assert.Equal([Id("[CLS]"), .. a, Id("[SEP]"), .. b, Id("[SEP]")], pair.Ids);
        Assert.Equal([.. Enumerable.Repeat(0, a.Length + 2), .. Enumerable.Repeat(1, b.Length + 1)], pair.TokenTypeIds);

        EncodedPair bare = t.EncodePair("How old are you?", "I am six.", addSpecialTokens: false);
        Assert.Equal([.. a, .. b], bare.Ids);
        Assert.Equal([.. Enumerable.Repeat(0, a.Length), .. Enumerable.Repeat(1, b.Length)], bare.TokenTypeIds);
    }

    [Fact]
    public void TokenizerJsonAndVocabTxtAgreeOnVariedText()
    {
        TextTokenizer json = LoadJson();
        TextTokenizer vocab = LoadVocabTxt();
        string[] corpus =
        [
            "", " ", "Hello, world!", "The QUICK brown fox jumps over the lazy dog.", "Don't stop—won't stop!",
            "e-mail: someone@example.com, $3.50 (approx.) #hashtag 50% off", "Ünïcödé àccents façade Ångström",
            "中文字符和日本語のテキスト", "한국어 텍스트", "Привет мир", "tab\tand\nnewline\r\nend", "zero\u200bwidth\u00adsoft",
            "emoji 🙂 and ✨ sparkles", "[CLS] literal [SEP] and [MASK] tokens", "lower[mask]case", "antidisestablishmentarianism",
            "a" + new string('b', 120), "1234567890 3.14159 1,000", "«quotes» „low“ ‘single’", "x\u0000y\uFFFDz",
        ];
        foreach (string text in corpus)
        {
            Assert.True(json.Encode(text).SequenceEqual(vocab.Encode(text)),
                $"'{text}': json [{string.Join(",", json.Encode(text))}] vs vocab.txt [{string.Join(",", vocab.Encode(text))}]");
            Assert.Equal(json.Decode(json.Encode(text)), vocab.Decode(vocab.Encode(text)));
        }
    }

    /// <summary>Greedy longest-match-first WordPiece over vocab.txt, written out here independently of LoraPS.</summary>
    private static string[] ReferenceWordPiece(string word)
    {
        var vocab = new HashSet<string>(Vocab);
        var pieces = new List<string>();
        for (int start = 0; start < word.Length;)
        {
            int end = word.Length;
            string? found = null;
            for (; end > start; end--)
            {
                string candidate = (start > 0 ? "##" : "") + word[start..end];
                if (vocab.Contains(candidate))
                {
                    found = candidate;
                    break;
                }
            }
            Assert.NotNull(found);
            pieces.Add(found);
            start = end;
        }
        return [.. pieces];
    }
}
