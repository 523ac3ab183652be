using System.Text;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace LoraPS.Tokenization;

/// <summary>The model step: one pre-tokenized word (or SentencePiece segment) → token ids.</summary>
internal interface ITokenModel
{
    void Tokenize(TextPiece word, List<int> ids);
}

/// <summary>
/// A tokenizer.json BPE model, merged by Microsoft.ML.Tokenizers' <see cref="BpeTokenizer"/>, with the three
/// tokenizers features it lacks added around it: byte fallback (SentencePiece-style "&lt;0xNN&gt;" tokens for
/// characters outside the vocabulary), <c>ignore_merges</c> (Llama 3: a word that is itself in the vocabulary is one
/// token) and vocabulary entries containing spaces (its merges list is space-separated).
/// </summary>
internal sealed class BpeTokenModel : ITokenModel
{
    // ML.Tokenizers silently drops characters outside the vocabulary unless it has an unknown token. We give it one
    // of our own that cannot occur in text, then decide per character what tokenizers would do: byte fallback,
    // the real unk token (fused or not), or nothing.
    private const string UnknownMarker = "\uFDD1";
    private const int UnknownMarkerId = -1;

    // ML.Tokenizers reads merges as "left right"; a token that contains ' ' is renamed with this noncharacter
    // in the vocabulary, the merges and every word we pass in.
    private const char SpaceStandIn = '\uFDD0';

    private readonly BpeTokenizer _bpe;
    private readonly Dictionary<string, int> _vocab;
    private readonly int? _unkId;
    private readonly bool _fuseUnk;
    private readonly bool _ignoreMerges;
    private readonly int[]? _byteIds;
    private readonly bool _renameSpaces;

    private BpeTokenModel(BpeTokenizer bpe, Dictionary<string, int> vocab, int? unkId, bool fuseUnk, bool ignoreMerges, int[]? byteIds, bool renameSpaces)
    {
        (_bpe, _vocab, _unkId, _fuseUnk, _ignoreMerges, _byteIds, _renameSpaces) = (bpe, vocab, unkId, fuseUnk, ignoreMerges, byteIds, renameSpaces);
    }

    public IReadOnlyDictionary<string, int> Vocabulary => _vocab;

    public bool ByteFallback => _byteIds is not null;

    public string? UnknownToken { get; private init; }

    public static BpeTokenModel FromJson(JsonElement model, string source)
    {
        Dictionary<string, int> vocab = ReadVocab(model, source);
        var merges = new List<(string Left, string Right)>();
        foreach (JsonElement m in model.RequiredArray("merges", source))
        {
            merges.Add(m.ValueKind switch
            {
                // tokenizers < 0.20 writes "left right"; newer versions write ["left", "right"].
                JsonValueKind.String when m.GetString()!.Split(' ') is [var l, var r] => (l, r),
                JsonValueKind.Array when m.GetArrayLength() == 2 => (m[0].GetString()!, m[1].GetString()!),
                _ => throw new InvalidDataException($"{source}: malformed BPE merge {m.GetRawText()}."),
            });
        }

        if (model.OptionalDouble("dropout") is double dropout && dropout > 0)
        {
            throw new NotSupportedException($"{source}: BPE dropout ({dropout}) randomises encoding and is not supported; set it to null.");
        }

        string? unk = model.OptionalString("unk_token");
        int? unkId = unk is not null && vocab.TryGetValue(unk, out int u) ? u : null;
        bool byteFallback = model.OptionalBool("byte_fallback") ?? false;
        int[]? byteIds = null;
        if (byteFallback)
        {
            byteIds = new int[256];
            for (int b = 0; b < 256; b++)
            {
                byteIds[b] = vocab.TryGetValue($"<0x{b:X2}>", out int id) ? id : -1;
            }
        }

        bool renameSpaces = vocab.Keys.Any(k => k.Contains(' '));
        string Rename(string s) => renameSpaces ? s.Replace(' ', SpaceStandIn) : s;

        // tokenizers keeps the last of duplicate merges (HashMap collect); ML.Tokenizers would throw on them.
        var lastIndex = new Dictionary<(string, string), int>();
        for (int i = 0; i < merges.Count; i++)
        {
            lastIndex[merges[i]] = i;
        }
        var mlMerges = merges.Where((m, i) => lastIndex[m] == i).Select(m => Rename(m.Left) + " " + Rename(m.Right)).ToList();

        var mlVocab = vocab.Select(kv => new KeyValuePair<string, int>(Rename(kv.Key), kv.Value)).ToList();
        mlVocab.Add(new KeyValuePair<string, int>(UnknownMarker, UnknownMarkerId));

        BpeTokenizer bpe;
        try
        {
            bpe = BpeTokenizer.Create(new BpeOptions(mlVocab)
            {
                Merges = mlMerges,
                UnknownToken = UnknownMarker,
                FuseUnknownTokens = false,
                // GPT-2's file has "" for both, which means none.
                ContinuingSubwordPrefix = model.OptionalString("continuing_subword_prefix") is { Length: > 0 } prefix ? prefix : null,
                EndOfWordSuffix = model.OptionalString("end_of_word_suffix") is { Length: > 0 } suffix ? suffix : null,
            });
        }
        catch (Exception ex) when (ex is InvalidOperationException or ArgumentException)
        {
            throw new InvalidDataException($"{source}: the BPE model is inconsistent: {ex.Message}", ex);
        }

        return new BpeTokenModel(bpe, vocab, unkId, model.OptionalBool("fuse_unk") ?? false,
            model.OptionalBool("ignore_merges") ?? false, byteIds, renameSpaces)
        {
            UnknownToken = unk,
        };
    }

    public void Tokenize(TextPiece piece, List<int> ids)
    {
        string word = piece.Text;
        if (word.Length == 0)
        {
            return;
        }
        if (_ignoreMerges && _vocab.TryGetValue(word, out int whole))
        {
            ids.Add(whole);
            return;
        }
        string input = _renameSpaces ? word.Replace(' ', SpaceStandIn) : word;
        IReadOnlyList<EncodedToken> tokens = _bpe.EncodeToTokens(input, out _, considerPreTokenization: false, considerNormalization: false);
        bool previousWasUnk = false;
        foreach (EncodedToken token in tokens)
        {
            if (token.Id != UnknownMarkerId)
            {
                ids.Add(token.Id);
                previousWasUnk = false;
                continue;
            }
            // Unknown character(s): tokenizers tries byte fallback first, then the unk token.
            (int offset, int length) = token.Offset.GetOffsetAndLength(input.Length);
            string chars = word.Substring(offset, length);
            if (_byteIds is not null && TryAddBytes(chars, ids))
            {
                previousWasUnk = false;
            }
            else if (_unkId is int unk && !(_fuseUnk && previousWasUnk))
            {
                ids.Add(unk);
                previousWasUnk = true;
            }
        }
    }

    private bool TryAddBytes(string chars, List<int> ids)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(chars);
        if (bytes.Any(b => _byteIds![b] < 0))
        {
            return false;
        }
        ids.AddRange(bytes.Select(b => _byteIds![b]));
        return true;
    }

    internal static Dictionary<string, int> ReadVocab(JsonElement model, string source)
    {
        JsonElement vocabJson = model.Required("vocab", source);
        if (vocabJson.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException($"{source}: model.vocab must be an object of token → id.");
        }
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (JsonProperty p in vocabJson.EnumerateObject())
        {
            vocab[p.Name] = p.Value.ValueKind == JsonValueKind.Number && p.Value.TryGetInt32(out int id) && id >= 0
                ? id : throw new InvalidDataException($"{source}: vocab entry \"{p.Name}\" has id {p.Value.GetRawText()}, expected a non-negative integer.");
        }
        if (vocab.Count == 0)
        {
            throw new InvalidDataException($"{source}: model.vocab is empty.");
        }
        return vocab;
    }
}

/// <summary>A tokenizer.json WordPiece model: greedy longest-match-first by Microsoft.ML.Tokenizers' <see cref="WordPieceTokenizer"/>.</summary>
internal sealed class WordPieceTokenModel : ITokenModel
{
    private readonly WordPieceTokenizer _wordPiece;

    private WordPieceTokenModel(WordPieceTokenizer wordPiece, Dictionary<string, int> vocab)
    {
        _wordPiece = wordPiece;
        Vocabulary = vocab;
    }

    public IReadOnlyDictionary<string, int> Vocabulary { get; }

    public string UnknownToken => _wordPiece.UnknownToken;

    public string ContinuingSubwordPrefix => _wordPiece.ContinuingSubwordPrefix;

    public static WordPieceTokenModel FromJson(JsonElement model, string source) => Create(
        BpeTokenModel.ReadVocab(model, source),
        model.OptionalString("unk_token") ?? "[UNK]",
        model.OptionalString("continuing_subword_prefix") ?? "##",
        model.OptionalInt("max_input_chars_per_word") ?? 100,
        source);

    public static WordPieceTokenModel Create(Dictionary<string, int> vocab, string unk, string prefix, int maxInputCharsPerWord, string source)
    {
        // ML.Tokenizers reads a vocab.txt stream (id = line number), so the vocabulary is written out in id
        // order; ids no token owns (gaps, or the first line of a repeated token) get a filler that text never matches.
        var lines = new string[vocab.Values.Max() + 1];
        foreach ((string token, int id) in vocab)
        {
            if (token.Contains('\n') || token.Contains('\r'))
            {
                throw new NotSupportedException($"{source}: WordPiece token {id} contains a line break, which ML.Tokenizers cannot load.");
            }
            lines[id] = token;
        }
        for (int i = 0; i < lines.Length; i++)
        {
            lines[i] ??= $"\uFDD2{i}";
        }
        if (!vocab.ContainsKey(unk))
        {
            throw new InvalidDataException($"{source}: the WordPiece unknown token '{unk}' is not in the vocabulary.");
        }
        using var stream = new MemoryStream(Encoding.UTF8.GetBytes(string.Join('\n', lines)));
        WordPieceTokenizer wordPiece = WordPieceTokenizer.Create(stream, new WordPieceOptions
        {
            UnknownToken = unk,
            ContinuingSubwordPrefix = prefix,
            MaxInputCharsPerWord = maxInputCharsPerWord,
        });
        return new WordPieceTokenModel(wordPiece, vocab);
    }

    public void Tokenize(TextPiece word, List<int> ids)
    {
        if (word.Text.Length > 0)
        {
            ids.AddRange(_wordPiece.EncodeToIds(word.Text, considerPreTokenization: false, considerNormalization: false));
        }
    }
}

/// <summary>
/// A SentencePiece tokenizer.model encoded by Microsoft.ML.Tokenizers' <see cref="SentencePieceTokenizer"/>
/// (BPE with byte fallback, Unigram). For models without a precompiled normalization map we normalize the text
/// ourselves, because ML.Tokenizers 2.0.1's normalizer with remove_extra_whitespaces drops inputs that are a single
/// character after trimming ("a" → nothing) and turns whitespace-only input into "▁".
/// </summary>
internal sealed class SentencePieceTokenModel : ITokenModel
{
    private readonly SentencePieceTokenizer _sp;
    private readonly SentencePieceModelFile _file;
    private readonly bool _ownNormalization;
    private readonly bool _dummyPrefixOnlyAtStart;

    /// <param name="sp">The ML.Tokenizers encoder for the file.</param>
    /// <param name="file">The parsed file (normalizer flags).</param>
    /// <param name="dummyPrefixOnlyAtStart">
    /// transformers' non-legacy Llama mode: text that follows a special token gets no '▁' prefix.
    /// </param>
    public SentencePieceTokenModel(SentencePieceTokenizer sp, SentencePieceModelFile file, bool dummyPrefixOnlyAtStart)
    {
        _sp = sp;
        _file = file;
        _ownNormalization = !file.HasPrecompiledCharsmap;
        // With a precompiled normalization map ML.Tokenizers normalizes, and always adds the prefix.
        _dummyPrefixOnlyAtStart = dummyPrefixOnlyAtStart && _ownNormalization;
    }

    public void Tokenize(TextPiece segment, List<int> ids)
    {
        if (!_ownNormalization)
        {
            ids.AddRange(_sp.EncodeToIds(segment.Text, addBeginningOfSentence: false, addEndOfSentence: false, considerPreTokenization: false));
            return;
        }
        bool prefix = _file.AddDummyPrefix && (segment.AtStart || !_dummyPrefixOnlyAtStart);
        string normalized = Normalize(segment.Text, prefix);
        if (normalized.Length > 0)
        {
            ids.AddRange(_sp.EncodeToIds(normalized, addBeginningOfSentence: false, addEndOfSentence: false,
                considerPreTokenization: false, considerNormalization: false));
        }
    }

    /// <summary>
    /// SentencePiece's <c>Normalizer::Normalize</c> for the identity rule: with remove_extra_whitespaces drop
    /// leading, trailing and repeated ' ' (only U+0020 — identity leaves tabs and newlines alone); add the dummy
    /// prefix; write spaces as '▁'.
    /// </summary>
    internal string Normalize(string text, bool addDummyPrefix)
    {
        char space = _file.EscapeWhitespaces ? '\u2581' : ' ';
        bool removeExtra = _file.RemoveExtraWhitespaces;
        int start = 0;
        if (removeExtra)
        {
            while (start < text.Length && text[start] == ' ')
            {
                start++;
            }
        }
        if (start == text.Length)
        {
            return "";
        }
        var sb = new StringBuilder(text.Length + 1);
        if (addDummyPrefix && !_file.TreatWhitespaceAsSuffix)
        {
            sb.Append(space);
        }
        bool previousSpace = removeExtra;
        for (int i = start; i < text.Length; i++)
        {
            char c = text[i];
            if (c == ' ')
            {
                if (!(removeExtra && previousSpace))
                {
                    sb.Append(space);
                }
                previousSpace = removeExtra;
            }
            else
            {
                sb.Append(c);
                previousSpace = false;
            }
        }
        if (removeExtra)
        {
            while (sb.Length > 0 && sb[^1] == space)
            {
                sb.Length--;
            }
        }
        if (addDummyPrefix && _file.TreatWhitespaceAsSuffix)
        {
            sb.Append(space);
        }
        return sb.ToString();
    }
}
