using LoraPS.Data;
using LoraPS.Tests.Tokenization;
using LoraPS.Tokenization;
using Xunit;

namespace LoraPS.Tests.Data;

/// <summary>
/// Tokenization per LitGPT's SFTDataset (spec-notes §5.3) with the real stories260K tokenizer (BOS 1, EOS 2,
/// add_bos_token true): prompt with BOS, response without BOS and with EOS, −100 on the prompt when masking.
/// </summary>
public class ExampleTokenizerTests
{
    private const int Bos = 1;
    private const int Eos = 2;

    private static readonly TextTokenizer Stories = TextTokenizer.Load(TokenizerFixtures.Stories260K);

    private static long[] Ids(IEnumerable<int> ids) => ids.Select(i => (long)i).ToArray();

    [Fact]
    public void Instruction_PromptWithBos_ResponseWithoutBosWithEos_LabelsEqualInputs()
    {
        var example = new InstructionExample("Tell a story.", "Lily", "Once upon a time, Lily saw a big dog.");
        string prompt = PromptStyles.Alpaca.Apply(example);
        long[] promptIds = [Bos, .. Ids(Stories.Encode(prompt, addSpecialTokens: false))];
        long[] responseIds = [.. Ids(Stories.Encode(example.Output, addSpecialTokens: false)), Eos];

        TokenizedExample t = new ExampleTokenizer(Stories).Tokenize(example);

        Assert.Equal([.. promptIds, .. responseIds], t.InputIds);
        Assert.Equal(t.InputIds, t.Labels);                 // LitGPT's Alpaca default: no masking
        Assert.Equal(promptIds.Length, t.PromptLength);
        Assert.False(t.Truncated);
        Assert.Null(t.ClassLabel);
        Assert.Single(t.InputIds, id => id == Bos);
        Assert.Single(t.InputIds, id => id == Eos);
        Assert.Equal(Eos, t.InputIds[^1]);
        // The response was encoded on its own: it starts with SentencePiece's "▁Once", not a continuation piece.
        Assert.Equal("\u2581Once", Stories.IdToToken((int)t.InputIds[t.PromptLength]));
        // stories260K's tokenizer.json normalizer strips surrounding whitespace (SentencePiece's remove_extra_whitespaces),
        // so the "\n" after "### Response:" is not encoded — as with Hugging Face tokenizers and LitGPT.
        Assert.Equal(prompt.TrimEnd('\n'), Stories.Decode(t.InputIds.Take(t.PromptLength).Select(i => (int)i)));
        Assert.Equal(example.Output, Stories.Decode(t.InputIds.Skip(t.PromptLength).Select(i => (int)i)));
    }

    [Fact]
    public void Instruction_KnownIds_ForAShortPlainExample()
    {
        // Pinned ids of stories260K for "Once upon a time" → " there was", so any change in the pipeline shows up.
        TokenizedExample t = new ExampleTokenizer(Stories, new TokenizationOptions { PromptStyle = PromptStyles.Plain, MaskPrompt = true })
            .Tokenize(new InstructionExample("Once upon a time", "there was"));
        long[] once = Ids(Stories.Encode("Once upon a time", addSpecialTokens: false));
        long[] there = Ids(Stories.Encode("there was", addSpecialTokens: false));
        Assert.Equal(["\u2581Once", "\u2581upon", "\u2581a", "\u2581time"], once.Select(i => Stories.IdToToken((int)i)));
        Assert.Equal([Bos, .. once, .. there, Eos], t.InputIds);
        Assert.Equal([-100, -100, -100, -100, -100, .. there, Eos], t.Labels);
        Assert.Equal(5, t.PromptLength);
    }

    [Fact]
    public void MaskPrompt_SetsExactlyThePromptPositionsToIgnoreIndex()
    {
        var example = new InstructionExample("Name a colour.", "", "Blue");
        TokenizedExample plain = new ExampleTokenizer(Stories).Tokenize(example);
        TokenizedExample masked = new ExampleTokenizer(Stories, new TokenizationOptions { MaskPrompt = true }).Tokenize(example);

        Assert.Equal(plain.InputIds, masked.InputIds);
        Assert.All(masked.Labels.Take(masked.PromptLength), l => Assert.Equal(-100, l));
        Assert.Equal(plain.InputIds.Skip(plain.PromptLength), masked.Labels.Skip(masked.PromptLength));
        Assert.Equal(-7, new ExampleTokenizer(Stories, new TokenizationOptions { MaskPrompt = true, IgnoreIndex = -7 }).Tokenize(example).Labels[0]);
    }

    [Fact]
    public void Eos_IsNotDoubled_WhenTheResponseAlreadyEndsWithIt()
    {
        // LitGPT appends EOS only when the encoding does not already end with it ("</s>" in text is the EOS token).
        TokenizedExample t = new ExampleTokenizer(Stories, new TokenizationOptions { PromptStyle = PromptStyles.Plain })
            .Tokenize(new InstructionExample("Hi", "bye</s>"));
        Assert.Equal(Eos, t.InputIds[^1]);
        Assert.NotEqual(Eos, t.InputIds[^2]);
    }

    [Fact]
    public void EmptyResponse_IsJustEos()
    {
        TokenizedExample t = new ExampleTokenizer(Stories, new TokenizationOptions { PromptStyle = PromptStyles.Plain }).Tokenize(new InstructionExample("Hi", ""));
        Assert.Equal([Bos, .. Ids(Stories.Encode("Hi", false)), Eos], t.InputIds);
    }

    [Fact]
    public void Text_IsBosTextEos_AllTargets()
    {
        TokenizedExample t = new ExampleTokenizer(Stories, new TokenizationOptions { MaskPrompt = true }).Tokenize(new TextExample("The cat sat."));
        Assert.Equal([Bos, .. Ids(Stories.Encode("The cat sat.", false)), Eos], t.InputIds);
        Assert.Equal(1, t.PromptLength);
        Assert.Equal([-100, .. t.InputIds.Skip(1)], t.Labels);   // only BOS is "prompt", and it is never a target anyway
    }

    [Fact]
    public void Truncation_CutsTheEnd_CountsTheExample_AndMasksAtMostTheKeptPrompt()
    {
        var options = new TokenizationOptions { MaxSeqLength = 12, MaskPrompt = true };
        var tokenizer = new ExampleTokenizer(Stories, options);
        var examples = new DatasetExample[]
        {
            new InstructionExample("Say hi.", "", "Hi!"),                       // the Alpaca prompt alone is longer than 12
            new TextExample("one two three four five six seven eight nine ten eleven twelve"),
            new TextExample("Hi."),
        };
        TokenizedDataset data = tokenizer.TokenizeAll(examples);

        TokenizedExample full = new ExampleTokenizer(Stories, options with { MaxSeqLength = null }).Tokenize(examples[0]);
        Assert.Equal(full.InputIds.Take(12), data[0].InputIds);
        Assert.Equal(12, data[0].PromptLength);
        Assert.All(data[0].Labels, l => Assert.Equal(-100, l));
        Assert.True(data[0].Truncated);
        Assert.True(data[1].Truncated);
        Assert.NotEqual(Eos, data[1].InputIds[^1]);          // the EOS was cut off with the end of the text
        Assert.False(data[2].Truncated);
        Assert.Equal(Eos, data[2].InputIds[^1]);
        Assert.All(data.Lengths, l => Assert.True(l <= 12));

        Assert.Equal(2, data.TruncatedCount);
        Assert.Equal(1, data.NoTargetCount);
        Assert.Equal(12, data.MaxLength);
        Assert.Equal(data.Lengths.Sum(), data.TotalTokens);
    }

    [Fact]
    public void AlpacaBundledSubset_TokenizesWithoutTruncationByDefault()
    {
        Dataset alpaca = DatasetReader.ReadFile(DataFixtures.AlpacaSubset);
        TokenizedDataset data = new ExampleTokenizer(Stories).TokenizeAll(alpaca.Examples.Take(300));
        Assert.Equal(300, data.Count);
        Assert.Equal(0, data.TruncatedCount);
        Assert.All(data, t => Assert.Equal(Eos, t.InputIds[^1]));
        Assert.All(data, t => Assert.Equal(Bos, t.InputIds[0]));
    }

    [Fact]
    public void Classification_Bert_PairTemplateTokenTypes_AndLongestFirstTruncation()
    {
        TextTokenizer bert = TextTokenizer.Load(TokenizerFixtures.MiniLm);
        int cls = bert.TokenToId("[CLS]")!.Value;
        int sep = bert.TokenToId("[SEP]")!.Value;
        long[] a = Ids(bert.Encode("the movie was great fun", false));
        long[] b = Ids(bert.Encode("i liked it", false));
        Assert.Equal((5, 3), (a.Length, b.Length));

        TokenizedExample t = new ExampleTokenizer(bert).Tokenize(new ClassificationExample("the movie was great fun", "i liked it", 1));
        Assert.Equal([cls, .. a, sep, .. b, sep], t.InputIds);
        Assert.Equal([0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1], t.TokenTypeIds!);
        Assert.Equal(1, t.ClassLabel);
        Assert.Empty(t.Labels);
        Assert.False(t.Truncated);

        // 9 tokens of room: only the longer text is cut (5 → 3 + 3 = 6 = 9 − 3 specials).
        TokenizedExample cut = new ExampleTokenizer(bert, new TokenizationOptions { MaxSeqLength = 9 })
            .Tokenize(new ClassificationExample("the movie was great fun", "i liked it", 0));
        Assert.Equal([cls, .. a.Take(3), sep, .. b, sep], cut.InputIds);
        Assert.True(cut.Truncated);

        // 7 tokens: both are cut to half of the 4 left.
        TokenizedExample both = new ExampleTokenizer(bert, new TokenizationOptions { MaxSeqLength = 7 })
            .Tokenize(new ClassificationExample("the movie was great fun", "i liked it", 0));
        Assert.Equal([cls, .. a.Take(2), sep, .. b.Take(2), sep], both.InputIds);

        // A single text keeps [CLS] … [SEP] when cut.
        TokenizedExample single = new ExampleTokenizer(bert, new TokenizationOptions { MaxSeqLength = 4 })
            .Tokenize(new ClassificationExample("the movie was great fun", null, 0));
        Assert.Equal([cls, .. a.Take(2), sep], single.InputIds);
    }

    [Fact]
    public void Classification_Llama_AddsBosOnly()
    {
        TokenizedExample t = new ExampleTokenizer(Stories).Tokenize(new ClassificationExample("Lily was happy.", null, 1));
        Assert.Equal([Bos, .. Ids(Stories.Encode("Lily was happy.", false))], t.InputIds);
        Assert.All(t.TokenTypeIds!, type => Assert.Equal(0, type));
    }

    [Theory]
    [InlineData(5, 3, 9, 5, 3)]
    [InlineData(5, 3, 6, 3, 3)]
    [InlineData(5, 3, 4, 2, 2)]
    [InlineData(3, 5, 5, 2, 3)]
    [InlineData(10, 10, 5, 2, 3)]
    [InlineData(1, 10, 4, 1, 3)]
    public void LongestFirst_MatchesHuggingFaceTokenizers(int first, int second, int budget, int keepFirst, int keepSecond)
    {
        Assert.Equal((keepFirst, keepSecond), ExampleTokenizer.LongestFirst(first, second, budget));
    }

    [Fact]
    public void InvalidOptions()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new ExampleTokenizer(Stories, new TokenizationOptions { MaxSeqLength = 0 }));
    }
}
