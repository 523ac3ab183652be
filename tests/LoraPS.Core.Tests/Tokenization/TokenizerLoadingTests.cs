using LoraPS.Tokenization;
using Xunit;

namespace LoraPS.Tests.Tokenization;

public class TokenizerLoadingTests
{
    [Fact]
    public void MissingFolder_NamesTheFolder()
    {
        string missing = Path.Combine(Path.GetTempPath(), "loraps-no-such-" + Guid.NewGuid().ToString("N"));
        var ex = Assert.Throws<DirectoryNotFoundException>(() => TextTokenizer.Load(missing));
        Assert.Contains(missing, ex.Message);
    }

    [Fact]
    public void FolderWithoutTokenizer_NamesTheFolderAndTheExpectedFiles()
    {
        using var folder = TempModelFolder.CopyOf(TokenizerFixtures.Stories260K, "config.json");
        var ex = Assert.Throws<FileNotFoundException>(() => TextTokenizer.Load(folder.Path));
        Assert.Contains(folder.Path, ex.Message);
        Assert.Contains("tokenizer.json", ex.Message);
        Assert.Contains("tokenizer.model", ex.Message);
        Assert.Contains("vocab.txt", ex.Message);
    }

    [Theory]
    [InlineData("{ \"model\": ", "is not valid JSON")]
    [InlineData("[1, 2, 3]", "has no \"model\"")]
    [InlineData("{\"version\": \"1.0\"}", "has no \"model\"")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": ["a c"]}}""", "inconsistent")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": "zero"}, "merges": []}}""", "non-negative integer")]
    [InlineData("""{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a"]}}""", "malformed BPE merge")]
    [InlineData("""{"model": {"type": "WordPiece", "vocab": {"a": 0}, "unk_token": "[UNK]"}}""", "'[UNK]' is not in the vocabulary")]
    public void MalformedTokenizerJson_IsAnInvalidDataErrorNamingTheFile(string content, string expected)
    {
        using var folder = new TempModelFolder();
        folder.Write("tokenizer.json", content);
        var ex = Assert.Throws<InvalidDataException>(() => TextTokenizer.Load(folder.Path));
        Assert.Contains(Path.Combine(folder.Path, "tokenizer.json"), ex.Message);
        Assert.Contains(expected, ex.Message);
    }

    [Theory]
    [InlineData("""{"model": {"type": "Unigram", "vocab": [["a", 0.0]], "unk_id": 0}}""", "'Unigram'")]
    [InlineData("""{"normalizer": {"type": "Precompiled", "precompiled_charsmap": ""}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}""", "'Precompiled'")]
    [InlineData("""{"pre_tokenizer": {"type": "UnicodeScripts"}, "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}""", "'UnicodeScripts'")]
    public void UnsupportedTokenizerJson_SaysWhatIsNotSupported(string content, string expected)
    {
        using var folder = new TempModelFolder();
        folder.Write("tokenizer.json", content);
        var ex = Assert.Throws<NotSupportedException>(() => TextTokenizer.Load(folder.Path));
        Assert.Contains(expected, ex.Message);
        Assert.Contains("tokenizer.json", ex.Message);
    }

    [Fact]
    public void UnsupportedTokenizerJsonFallsBackToTokenizerModel()
    {
        using var folder = TempModelFolder.CopyOf(TokenizerFixtures.Stories260K, "tokenizer.model");
        folder.Write("tokenizer.json", """{"model": {"type": "Unigram", "vocab": [["a", 0.0]], "unk_id": 0}}""");
        Assert.Equal("SentencePiece BPE (tokenizer.model)", TextTokenizer.Load(folder.Path).Kind);
    }

    [Fact]
    public void CorruptTokenizerModel_IsAnInvalidDataErrorNamingTheFile()
    {
        using var folder = new TempModelFolder();
        File.WriteAllBytes(Path.Combine(folder.Path, "tokenizer.model"), [0x0A, 0xFF, 0xFF, 0xFF, 0x0F, 0x01]);
        var ex = Assert.Throws<InvalidDataException>(() => TextTokenizer.Load(folder.Path));
        Assert.Contains("tokenizer.model", ex.Message);
    }

    [Fact]
    public void MalformedTokenizerConfig_IsAnInvalidDataErrorNamingTheFile()
    {
        using var folder = TempModelFolder.CopyOf(TokenizerFixtures.Stories260K, "tokenizer.json");
        folder.Write("tokenizer_config.json", """{"eos_token": 42}""");
        var ex = Assert.Throws<InvalidDataException>(() => TextTokenizer.Load(folder.Path));
        Assert.Contains("tokenizer_config.json", ex.Message);
        Assert.Contains("eos_token", ex.Message);
    }
}
