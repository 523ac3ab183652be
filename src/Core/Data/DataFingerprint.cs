using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using LoraPS.Tokenization;

namespace LoraPS.Data;

/// <summary>
/// SHA-256 fingerprints recorded in run.json, so two runs can tell whether they trained on the same token ids.
/// The data fingerprint covers the normalised examples (after property mapping, in record order — so not the file
/// bytes, which change with whitespace or key order), the label map, the prompt template (its name and its text on
/// probe examples), the tokenization settings and the tokenizer's identity. Every string is hashed as a 4-byte
/// little-endian length and its UTF-8 bytes, so field boundaries cannot collide.
/// </summary>
public static class DataFingerprint
{
    private const string Version = "LoraPS data fingerprint v1";

    /// <summary>The fingerprint of a dataset tokenized by <paramref name="tokenizer"/>, as lower-case hex.</summary>
    public static string Compute(Dataset dataset, ExampleTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        return Compute(dataset.Examples, dataset.Labels, tokenizer);
    }

    /// <summary>The fingerprint of examples (in this order) tokenized by <paramref name="tokenizer"/>, as lower-case hex.</summary>
    public static string Compute(IEnumerable<DatasetExample> examples, LabelMap? labels, ExampleTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(examples);
        ArgumentNullException.ThrowIfNull(tokenizer);
        using var hash = new Writer();
        hash.Add(Version);

        TokenizationOptions options = tokenizer.Options;
        hash.Add("template").Add(options.PromptStyle.Name)
            .Add(options.PromptStyle.Apply(new InstructionExample("{instruction}", "{input}", "{output}")))
            .Add(options.PromptStyle.Apply(new InstructionExample("{instruction}", "", "{output}")));
        hash.Add("options").Add(options.MaskPrompt).Add(options.MaxSeqLength).Add(options.IgnoreIndex);
        hash.Add("tokenizer").Add(TokenizerIdentity(tokenizer.Tokenizer));

        hash.Add("labels");
        if (labels is not null)
        {
            hash.Add(labels.Count);
            foreach (string name in labels.Names)
            {
                hash.Add(name);
            }
        }

        hash.Add("examples");
        foreach (DatasetExample example in examples)
        {
            _ = example switch
            {
                InstructionExample e => hash.Add("I").Add(e.Instruction).Add(e.Input).Add(e.Output),
                TextExample e => hash.Add("T").Add(e.Text),
                ClassificationExample e => hash.Add("C").Add(e.Text).Add(e.TextPair).Add(e.Label),
                _ => throw new NotSupportedException($"Cannot fingerprint a {example?.GetType().Name ?? "null"} example."),
            };
        }
        return hash.Finish();
    }

    /// <summary>
    /// What makes a tokenizer produce its ids: the SHA-256 of the file it was loaded from, its kind, vocabulary
    /// size and special tokens (which tokenizer_config.json can change). Independent of the folder's path.
    /// </summary>
    public static string TokenizerIdentity(TextTokenizer tokenizer)
    {
        ArgumentNullException.ThrowIfNull(tokenizer);
        using var hash = new Writer();
        hash.Add("LoraPS tokenizer identity v1").Add(tokenizer.Kind).Add(Path.GetFileName(tokenizer.SourcePath))
            .Add(Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(tokenizer.SourcePath))))
            .Add(tokenizer.VocabSize).Add(tokenizer.BosTokenId).Add(tokenizer.PadTokenId).Add(tokenizer.UnkTokenId)
            .Add(tokenizer.AddBosToken).Add(tokenizer.AddEosToken).Add(string.Join(",", tokenizer.EosTokenIds));
        return hash.Finish();
    }

    /// <summary>One fingerprint of several parts (null parts count as absent), e.g. the sources and settings of a run.</summary>
    public static string Combine(params string?[] parts)
    {
        ArgumentNullException.ThrowIfNull(parts);
        using var hash = new Writer();
        hash.Add("LoraPS combined fingerprint v1").Add(parts.Length);
        foreach (string? part in parts)
        {
            hash.Add(part);
        }
        return hash.Finish();
    }

    private sealed class Writer : IDisposable
    {
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private readonly byte[] _length = new byte[4];

        public Writer Add(string? text)
        {
            if (text is null)
            {
                BinaryPrimitives.WriteInt32LittleEndian(_length, -1);
                _hash.AppendData(_length);
                return this;
            }
            byte[] bytes = Encoding.UTF8.GetBytes(text);
            BinaryPrimitives.WriteInt32LittleEndian(_length, bytes.Length);
            _hash.AppendData(_length);
            _hash.AppendData(bytes);
            return this;
        }

        public Writer Add(long? number) => Add(number?.ToString(CultureInfo.InvariantCulture));

        public Writer Add(bool flag) => Add(flag ? "true" : "false");

        public string Finish() => Convert.ToHexString(_hash.GetHashAndReset()).ToLowerInvariant();

        public void Dispose() => _hash.Dispose();
    }
}
