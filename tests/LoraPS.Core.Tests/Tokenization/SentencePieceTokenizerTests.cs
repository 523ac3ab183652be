using System.Text;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using LoraPS.Tokenization;
using Xunit;

namespace LoraPS.Tests.Tokenization;

/// <summary>
/// stories260K ships the same tokenizer twice — SentencePiece's tokenizer.model and the Hugging Face tokenizer.json
/// converted from it — read by two independent code paths here; Llama 2's tokenizer.model checks known ids.
/// </summary>
public class SentencePieceTokenizerTests
{
    private static readonly string[] ConfigFiles = ["tokenizer_config.json", "special_tokens_map.json", "generation_config.json", "config.json"];

    private static TextTokenizer LoadStoriesSentencePiece()
    {
        using var folder = TempModelFolder.CopyOf(TokenizerFixtures.Stories260K, ["tokenizer.model", .. ConfigFiles]);
        return TextTokenizer.Load(folder.Path);
    }

    [Fact]
    public void Stories260K_PrefersTokenizerJson_AndFallsBackToTokenizerModel()
    {
        TextTokenizer json = TextTokenizer.Load(TokenizerFixtures.Stories260K);
        TextTokenizer sp = LoadStoriesSentencePiece();

        Assert.Equal("SentencePiece-style BPE (tokenizer.json)", json.Kind);
        Assert.Equal("SentencePiece BPE (tokenizer.model)", sp.Kind);
        foreach (TextTokenizer t in new[] { json, sp })
        {
            Assert.Equal(512, t.VocabSize);
            Assert.Equal(1, t.BosTokenId);
            Assert.Equal([2], t.EosTokenIds);
            Assert.Equal(0, t.UnkTokenId);
            Assert.Null(t.PadTokenId);   // tokenizer_config.json says "pad_token": null
            Assert.True(t.AddBosToken);
            Assert.False(t.AddEosToken);
            Assert.Equal(1, t.TokenToId("<s>"));
            Assert.Equal(2, t.TokenToId("</s>"));
            Assert.Equal("<0x0A>", t.IdToToken(13));

            IReadOnlyList<int> once = t.Encode("Once upon a time");
            Assert.Equal(1, once[0]);
            Assert.Equal(["\u2581Once", "\u2581upon", "\u2581a", "\u2581time"], once.Skip(1).Select(id => t.IdToToken(id)));
            Assert.Equal(once.Skip(1), t.Encode("Once upon a time", addSpecialTokens: false));
            Assert.Equal([1], t.Encode(""));
            Assert.Equal([1], t.Encode("   "));
        }
    }

    [Fact]
    public void Stories260K_JsonAndModelGiveIdenticalIds_AndDecodeToTheNormalizedInput()
    {
        TextTokenizer json = TextTokenizer.Load(TokenizerFixtures.Stories260K);
        TextTokenizer sp = LoadStoriesSentencePiece();
        List<string> corpus = Corpus();
        Assert.True(corpus.Count >= 300);

        foreach (string text in corpus)
        {
            IReadOnlyList<int> fromJson = json.Encode(text);
            IReadOnlyList<int> fromModel = sp.Encode(text);
            Assert.True(fromJson.SequenceEqual(fromModel),
                $"'{Escape(text)}': tokenizer.json [{string.Join(",", fromJson)}] vs tokenizer.model [{string.Join(",", fromModel)}]");

            if (Regex.IsMatch(text, "<s>|</s>|<unk>"))
            {
                continue;   // special tokens are skipped by Decode; SpecialTokensInTextAreSingleTokens covers them
            }
            // Both remove leading, trailing and repeated spaces (SentencePiece remove_extra_whitespaces).
            string normalized = Regex.Replace(text.Trim(' '), " {2,}", " ");
            Assert.Equal(normalized, json.Decode(fromJson));
            Assert.Equal(normalized, sp.Decode(fromModel));
        }
    }

    [Fact]
    public void Stories260K_UsesByteFallbackForCharactersOutsideTheVocabulary()
    {
        TextTokenizer t = TextTokenizer.Load(TokenizerFixtures.Stories260K);
        IReadOnlyList<string> tokens = t.Tokenize("\U0001F642");   // 🙂 = F0 9F 99 82
        Assert.Equal(["\u2581", "<0xF0>", "<0x9F>", "<0x99>", "<0x82>"], tokens);
        Assert.Equal("\U0001F642", t.Decode(t.Encode("\U0001F642")));
        // A byte run that is not valid UTF-8 decodes to one U+FFFD per byte, as in tokenizers.
        Assert.Equal("\uFFFD\uFFFD", t.Decode([t.TokenToId("<0xF0>")!.Value, t.TokenToId("<0x9F>")!.Value]));
    }

    [Fact]
    public void SpecialTokensInTextAreSingleTokens_AndDecodeCanKeepOrSkipThem()
    {
        TextTokenizer t = TextTokenizer.Load(TokenizerFixtures.Stories260K);
        IReadOnlyList<int> ids = t.Encode("Hello</s><s>world");
        // Each text run gets its own '▁' prefix (transformers' legacy Llama behaviour).
        Assert.Equal([1, .. t.Encode("Hello", false), 2, 1, .. t.Encode("world", false)], ids);
        Assert.Equal("Hello world", t.Decode(ids));
        Assert.Equal("<s> Hello</s><s> world", t.Decode(ids, skipSpecialTokens: false));
    }

    [Fact]
    public void Llama2_KnownReferenceIds()
    {
        TextTokenizer t = TextTokenizer.Load(TokenizerFixtures.Llama2);
        Assert.Equal("SentencePiece BPE (tokenizer.model)", t.Kind);
        Assert.Equal(32000, t.VocabSize);
        Assert.Equal((1, 2, 0), (t.BosTokenId, t.EosTokenIds.Single(), t.UnkTokenId));

        AssertEncodes(t, "Hello world", [1, 15043, 3186], ["<s>", "\u2581Hello", "\u2581world"]);
        AssertEncodes(t, "Once upon a time", [1, 9038, 2501, 263, 931], ["<s>", "\u2581Once", "\u2581upon", "\u2581a", "\u2581time"]);
        // Llama 2 splits digits and writes '\n' as a byte token after a lone '▁'.
        AssertEncodes(t, "2023", [1, 29871, 29906, 29900, 29906, 29941], ["<s>", "\u2581", "2", "0", "2", "3"]);
        AssertEncodes(t, "\nHello", [1, 29871, 13, 10994], ["<s>", "\u2581", "<0x0A>", "Hello"]);
        AssertEncodes(t, "<s>Hi</s>", [1, 1, 6324, 2], ["<s>", "<s>", "\u2581Hi", "</s>"], decoded: "Hi");
        // No remove_extra_whitespaces in Llama 2: spaces survive the round trip.
        Assert.Equal("  two  spaces ", t.Decode(t.Encode("  two  spaces ")));
        Assert.Equal("héllo 日本 \U0001F642", t.Decode(t.Encode("héllo 日本 \U0001F642")));
    }

    [Fact]
    public void Llama2_NonLegacyModeGivesNoSpacePrefixAfterSpecialTokens()
    {
        using var folder = TempModelFolder.CopyOf(TokenizerFixtures.Llama2, "tokenizer.model");
        Assert.Equal([1, 1, 15043], TextTokenizer.Load(folder.Path).Encode("<s>Hello"));
        folder.Write("tokenizer_config.json", """{"tokenizer_class": "LlamaTokenizer", "legacy": false}""");
        TextTokenizer nonLegacy = TextTokenizer.Load(folder.Path);
        Assert.Equal([1, 1, 10994], nonLegacy.Encode("<s>Hello"));
        Assert.Equal([1, 15043, 3186], nonLegacy.Encode("Hello world"));
    }

    [Fact]
    public void MetaspacePreTokenizer_PrependsOnlyAtTheStartOfTheInput()
    {
        // The same vocabulary in today's tokenizer.json form: Metaspace(prepend_scheme "first", split false).
        JsonNode root = JsonNode.Parse(File.ReadAllText(Path.Combine(TokenizerFixtures.Stories260K, "tokenizer.json")))!;
        root["normalizer"] = null;
        root["pre_tokenizer"] = JsonNode.Parse("""{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}""");
        root["decoder"] = JsonNode.Parse("""{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}""");
        using var folder = TempModelFolder.CopyOf(TokenizerFixtures.Stories260K, ConfigFiles);
        folder.Write("tokenizer.json", root.ToJsonString());
        TextTokenizer modern = TextTokenizer.Load(folder.Path);
        TextTokenizer legacy = TextTokenizer.Load(TokenizerFixtures.Stories260K);

        Assert.Equal(legacy.Encode("Once upon a time, Lily!"), modern.Encode("Once upon a time, Lily!"));

        // After a special token there is no '▁': compare with SentencePiece in transformers' non-legacy mode.
        using var spFolder = TempModelFolder.CopyOf(TokenizerFixtures.Stories260K, "tokenizer.model");
        spFolder.Write("tokenizer_config.json", """{"tokenizer_class": "LlamaTokenizer", "legacy": false}""");
        TextTokenizer nonLegacy = TextTokenizer.Load(spFolder.Path);
        IReadOnlyList<int> expected = [1, .. legacy.Encode("Hello", false), .. nonLegacy.Encode("</s>world", false)];
        Assert.Equal(expected, modern.Encode("Hello</s>world"));
        Assert.NotEqual(legacy.Encode("Hello</s>world"), modern.Encode("Hello</s>world"));
        Assert.Equal("Once upon a time", modern.Decode(modern.Encode("Once upon a time")));
    }

    [Fact]
    public void TokenizerConfigFlagsRewriteTheTemplate_AndGenerationConfigAddsStopIds()
    {
        using var folder = TempModelFolder.CopyOf(TokenizerFixtures.Stories260K, ["tokenizer.json", "special_tokens_map.json", "config.json"]);
        folder.Write("tokenizer_config.json", """{"tokenizer_class": "LlamaTokenizer", "add_bos_token": false, "add_eos_token": true, "pad_token": {"content": "<unk>", "special": true}}""");
        folder.Write("generation_config.json", """{"bos_token_id": 1, "eos_token_id": [2, 5]}""");
        TextTokenizer t = TextTokenizer.Load(folder.Path);

        Assert.False(t.AddBosToken);
        Assert.True(t.AddEosToken);
        Assert.Equal([2, 5], t.EosTokenIds);
        Assert.Equal(0, t.PadTokenId);
        IReadOnlyList<int> ids = t.Encode("Once upon a time");
        Assert.Equal(2, ids[^1]);
        Assert.NotEqual(1, ids[0]);
        EncodedPair pair = t.EncodePair("a", "b");
        Assert.Equal([.. t.Encode("a", false), 2, .. t.Encode("b", false), 2], pair.Ids);
        Assert.Equal([0, 0, 1, 1], pair.TokenTypeIds);
    }

    private static void AssertEncodes(TextTokenizer t, string text, int[] ids, string[] pieces, string? decoded = null)
    {
        Assert.Equal(ids, t.Encode(text));
        Assert.Equal(pieces, ids.Select(id => t.IdToToken(id)));
        Assert.Equal(decoded ?? text, t.Decode(ids));
    }

    private static string Escape(string s) => s.Replace("\n", "\\n").Replace("\t", "\\t");

    /// <summary>
    /// ASCII stories, punctuation, digits, repeated spaces, text that needs byte fallback, emoji and the empty
    /// string. Nothing starts or ends with a tab, newline or other non-U+0020 whitespace: the tokenizer.json's
    /// Strip normalizer removes those (Unicode whitespace) while SentencePiece's identity normalizer only trims ' '.
    /// </summary>
    private static List<string> Corpus()
    {
        var corpus = new List<string>
        {
            "", "a", "I", "x y", "Once upon a time", "Once upon a time, there was a little girl named Lily.",
            "She loved to play outside in the park.", "One day, she saw a big, red ball.", "\"Hello!\" said Tim.",
            "Lily's mom said, \"Don't go!\"", "What?! No... yes; maybe: (ok) [fine] {sure}", "1 2 3 10 42 2023 3.14 -7 1,000,000",
            "  leading", "trailing  ", "many     spaces   here", "tab\tinside", "new\nline", "two\n\nnewlines", "mixed \t \n whitespace",
            "naïve café résumé", "Ñandú über straße", "日本語のテキスト", "Привет, мир", "مرحبا", "emoji 🙂🚀🎉 end", "🙂",
            "’“”—–…", "a\u00a0b", "e\u0301", "<unk>", "<s>", "</s>", "<s> leading special", "text</s>", "x<s>y</s>z",
            "The cat sat on the mat. The dog ran.", "UPPER lower MiXeD", "tim and lily and ben", "!!!", "???", "...", "--",
            "$5 & 10% off #1 @home ~ ^ * + = | \\ / < >", "a-b_c", "it's they're we've I'm you'll he'd",
        };
        string[] fragments =
        [
            "Once", "upon", "a", "time", "there", "was", "little", "girl", "named", "Lily", "Tim", "Ben", "she", "he", "played",
            "with", "her", "big", "red", "ball", "in", "the", "park", "happy", "sad", "friend", "dog", "cat", "said", "Mom",
            ",", ".", "!", "?", "\"", "'", ";", ":", "-", "(", ")", "0", "7", "12", "365", "3.5", "é", "ü", "ß", "ñ", "日本",
            "猫", "Ж", "🙂", "🚀", "✨", "’", "“", "”", "—", "…", "\u00a0", "\t", "\n", "x\u0301",
        ];
        string[] separators = [" ", " ", " ", "", "  ", "   ", "\n", ", "];
        var random = new Random(260);
        while (corpus.Count < 320)
        {
            var sb = new StringBuilder();
            int words = random.Next(1, 14);
            for (int i = 0; i < words; i++)
            {
                if (i > 0)
                {
                    sb.Append(separators[random.Next(separators.Length)]);
                }
                sb.Append(fragments[random.Next(fragments.Length)]);
            }
            string text = sb.ToString();
            if (random.Next(4) == 0)
            {
                text = "  " + text + " ";
            }
            // Keep the ends free of whitespace other than ' ' (see the summary).
            string core = text.Trim(' ');
            if (core.Length > 0 && (char.IsWhiteSpace(core[0]) || char.IsWhiteSpace(core[^1])))
            {
                continue;
            }
            corpus.Add(text);
        }
        return corpus;
    }
}
