using LoraPS.Data;
using LoraPS.Tests.Tokenization;
using LoraPS.Tokenization;
using Xunit;

namespace LoraPS.Tests.Data;

/// <summary>The fingerprint changes with anything that changes the token ids, and with nothing else.</summary>
public class DataFingerprintTests
{
    private static readonly TextTokenizer Stories = TextTokenizer.Load(TokenizerFixtures.Stories260K);

    private static readonly InstructionExample[] Examples =
    [
        new("Add.", "1, 2", "3"),
        new("Greet.", "", "Hello!"),
    ];

    private static string Print(IEnumerable<DatasetExample> examples, TokenizationOptions? options = null, TextTokenizer? tokenizer = null, LabelMap? labels = null) =>
        DataFingerprint.Compute(examples, labels, new ExampleTokenizer(tokenizer ?? Stories, options));

    [Fact]
    public void IsStable_AndPinned()
    {
        string print = Print(Examples);
        Assert.Matches("^[0-9a-f]{64}$", print);
        Assert.Equal(print, Print(Examples.ToArray()));
        // Pinned, so a change of the fingerprint's definition (which breaks comparisons with old run.json files) is
        // deliberate. The value was recomputed independently by a Python transcription of the documented encoding
        // (length-prefixed UTF-8 fields, SHA-256); it depends on the exact bytes of models/stories260K/tokenizer.json.
        Assert.Equal("cd49cb78b2c3e7d7fd67043b8f802880a61a8fe8aba3fb142bc5162d46f120eb", print);
    }

    [Fact]
    public void ChangesWithData_Template_Options_Tokenizer_And_Labels()
    {
        string baseline = Print(Examples);
        var variants = new List<string>
        {
            Print([Examples[0], Examples[1] with { Output = "Hello." }]),
            Print([Examples[1], Examples[0]]),                                   // order is part of the data
            Print([Examples[0]]),
            Print([new InstructionExample("Add.", "", "1, 23"), Examples[1]]),   // moved text between fields
            Print(Examples, new TokenizationOptions { PromptStyle = PromptStyles.Plain }),
            Print(Examples, new TokenizationOptions { MaskPrompt = true }),
            Print(Examples, new TokenizationOptions { MaxSeqLength = 256 }),
            Print(Examples, new TokenizationOptions { IgnoreIndex = -1 }),
            Print(Examples, tokenizer: TextTokenizer.Load(TokenizerFixtures.MiniLm)),
            Print([new ClassificationExample("a", null, 0)], labels: LabelMap.FromNames(["neg", "pos"])),
            Print([new ClassificationExample("a", null, 0)], labels: LabelMap.FromNames(["bad", "pos"])),
            Print([new TextExample("Add.")]),
        };
        Assert.Equal(variants.Count + 1, variants.Append(baseline).Distinct().Count());
    }

    [Fact]
    public void DoesNotDependOnFileFormatting()
    {
        using var dir = new TempDataFolder();
        string json = dir.Write("a.json", "[\n  {\"output\": \"3\", \"instruction\": \"Add.\", \"input\": \"1, 2\"},\n  {\"instruction\": \"Greet.\", \"output\": \"Hello!\"}\n]");
        string jsonl = dir.Write("b.jsonl", "{\"instruction\":\"Add.\",\"input\":\"1, 2\",\"output\":\"3\"}\n{\"instruction\":\"Greet.\",\"input\":\"\",\"output\":\"Hello!\"}\n");
        string csv = dir.Write("c.csv", "instruction,input,output\r\nAdd.,\"1, 2\",3\r\nGreet.,,Hello!\r\n");
        var tokenizer = new ExampleTokenizer(Stories);
        string expected = Print(Examples);
        foreach (string file in new[] { json, jsonl, csv })
        {
            Assert.Equal(expected, DataFingerprint.Compute(DatasetReader.ReadFile(file), tokenizer));
        }
    }

    [Fact]
    public void TokenizerIdentity_IgnoresTheFolderPath()
    {
        using var copy = TempModelFolder.CopyOf(TokenizerFixtures.Stories260K, "tokenizer.json", "tokenizer_config.json", "config.json", "generation_config.json", "special_tokens_map.json");
        Assert.Equal(DataFingerprint.TokenizerIdentity(Stories), DataFingerprint.TokenizerIdentity(TextTokenizer.Load(copy.Path)));
        Assert.NotEqual(DataFingerprint.TokenizerIdentity(Stories), DataFingerprint.TokenizerIdentity(TextTokenizer.Load(TokenizerFixtures.MiniLm)));
    }

    [Fact]
    public void Combine_IsOrderAndNullSensitive()
    {
        Assert.NotEqual(DataFingerprint.Combine("a", null), DataFingerprint.Combine(null, "a"));
        Assert.NotEqual(DataFingerprint.Combine("a", ""), DataFingerprint.Combine("a", null));
        Assert.NotEqual(DataFingerprint.Combine("ab", "c"), DataFingerprint.Combine("a", "bc"));
        Assert.Equal(DataFingerprint.Combine("a", "b"), DataFingerprint.Combine("a", "b"));
    }
}
