using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace LoraPS.Tokenization;

/// <summary>Everything a <see cref="TextTokenizer"/> runs on, built from one tokenizer file and its config files.</summary>
internal sealed class TokenizerParts
{
    public required string Kind { get; init; }

    public required string SourcePath { get; init; }

    public required AddedTokenSplitter Splitter { get; init; }

    public TextNormalizer? Normalizer { get; init; }

    public PreTokenizerStep? PreTokenizer { get; init; }

    public required ITokenModel Model { get; init; }

    public TokenDecoder? Decoder { get; init; }

    public required SpecialTokenTemplate Template { get; init; }

    public required Dictionary<string, int> TokenToId { get; init; }

    public required Dictionary<int, string> IdToToken { get; init; }

    public required HashSet<int> SpecialIds { get; init; }

    public required ResolvedSpecialTokens Specials { get; init; }

    public bool CleanUpTokenizationSpaces { get; init; }
}

/// <summary>The special token ids a tokenizer ended up with.</summary>
internal sealed record ResolvedSpecialTokens(int? Bos, IReadOnlyList<int> Eos, int? Pad, int? Unk, int? Cls, int? Sep, int? Mask);

/// <summary>Reads a model folder into <see cref="TokenizerParts"/>: tokenizer.json, else tokenizer.model, else vocab.txt.</summary>
internal static class TokenizerLoader
{
    public const string TokenizerJson = "tokenizer.json";
    public const string SentencePieceModel = "tokenizer.model";
    public const string WordPieceVocab = "vocab.txt";

    public static TokenizerParts Load(string modelDirectory)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(modelDirectory);
        string dir = Path.GetFullPath(modelDirectory);
        if (!Directory.Exists(dir))
        {
            throw new DirectoryNotFoundException($"Tokenizer folder '{dir}' does not exist.");
        }
        string json = Path.Combine(dir, TokenizerJson);
        string spm = Path.Combine(dir, SentencePieceModel);
        string vocab = Path.Combine(dir, WordPieceVocab);
        TokenizerSettings settings = TokenizerSettings.Read(dir);

        if (File.Exists(json))
        {
            try
            {
                return LoadTokenizerJson(json, settings);
            }
            catch (UnsupportedModelTypeException) when (File.Exists(spm))
            {
                // e.g. a Unigram tokenizer.json next to the SentencePiece file it was converted from.
                return LoadSentencePiece(spm, settings);
            }
            catch (UnsupportedModelTypeException ex)
            {
                throw new NotSupportedException(ex.Message, ex);
            }
        }
        if (File.Exists(spm))
        {
            return LoadSentencePiece(spm, settings);
        }
        if (File.Exists(vocab))
        {
            return LoadBertVocab(vocab, settings);
        }
        throw new FileNotFoundException(
            $"No tokenizer in '{dir}': expected {TokenizerJson} (Hugging Face tokenizers), {SentencePieceModel} (SentencePiece) " +
            $"or {WordPieceVocab} (BERT WordPiece vocabulary). Copy the tokenizer files from the model's repository into that folder.",
            Path.Combine(dir, TokenizerJson));
    }

    private sealed class UnsupportedModelTypeException(string message) : Exception(message);

    private static TokenizerParts LoadTokenizerJson(string path, TokenizerSettings settings)
    {
        JsonElement root = JsonHelpers.ReadFile(path);
        if (root.ValueKind != JsonValueKind.Object || root.Optional("model") is not JsonElement model || model.ValueKind != JsonValueKind.Object)
        {
            throw new InvalidDataException($"'{path}' is not a Hugging Face tokenizer.json: it has no \"model\" object.");
        }
        string type = model.OptionalString("type") ?? InferModelType(model);

        TextNormalizer? normalizer = TextNormalizer.FromJson(root.Optional("normalizer"), path);
        PreTokenizerStep? preTokenizer = PreTokenizerStep.FromJson(root.Optional("pre_tokenizer"), path);
        TokenDecoder? decoder = TokenDecoder.FromJson(root.Optional("decoder"), path);

        ITokenModel tokenModel;
        Dictionary<string, int> vocab;
        string? modelUnk;
        string kind;
        switch (type)
        {
            case "BPE":
                var bpe = BpeTokenModel.FromJson(model, path);
                (tokenModel, vocab, modelUnk) = (bpe, new Dictionary<string, int>(bpe.Vocabulary), bpe.UnknownToken);
                kind = preTokenizer.Contains<ByteLevelPreTokenizer>() || decoder.Contains<ByteLevelDecoder>()
                    ? "Byte-level BPE"
                    : bpe.ByteFallback || preTokenizer.Contains<MetaspacePreTokenizer>() || vocab.Keys.Any(k => k.StartsWith('\u2581'))
                        ? "SentencePiece-style BPE"
                        : "BPE";
                break;
            case "WordPiece":
                var wordPiece = WordPieceTokenModel.FromJson(model, path);
                (tokenModel, vocab, modelUnk, kind) = (wordPiece, new Dictionary<string, int>(wordPiece.Vocabulary), wordPiece.UnknownToken, "WordPiece");
                break;
            default:
                throw new UnsupportedModelTypeException(
                    $"'{path}': tokenizer model type '{type}' is not supported (supported: BPE, WordPiece); " +
                    $"a {SentencePieceModel} in the same folder would be used instead.");
        }

        var added = new List<AddedToken>();
        if (root.Optional("added_tokens") is { ValueKind: JsonValueKind.Array } addedJson)
        {
            foreach (JsonElement t in addedJson.EnumerateArray())
            {
                int id = t.Optional("id") is { ValueKind: JsonValueKind.Number } idJson && idJson.TryGetInt32(out int i) && i >= 0
                    ? i : throw new InvalidDataException($"'{path}': added token without a valid \"id\": {t.GetRawText()}.");
                added.Add(TokenizerSettings.ReadAddedToken(t, id, t.RequiredString("content", path)));
            }
        }

        int? padDefault = root.Optional("padding")?.OptionalInt("pad_id");
        var vocabulary = new Vocabulary(vocab, added, settings);
        ResolvedSpecialTokens specials = vocabulary.Resolve(bosDefault: null, eosDefault: null, padDefault, modelUnk);

        SpecialTokenTemplate template = SpecialTokenTemplate.FromJson(root.Optional("post_processor"), path);
        if ((settings.AddBosToken is not null || settings.AddEosToken is not null) && template.IsBosEosShaped(specials))
        {
            // transformers' LlamaTokenizerFast (and friends) rebuild the post-processor from these two flags.
            bool addBos = settings.AddBosToken ?? template.StartsWith(specials.Bos);
            bool addEos = settings.AddEosToken ?? template.EndsWith(specials.Eos.Count > 0 ? specials.Eos[0] : null);
            template = SpecialTokenTemplate.BosEos(addBos ? specials.Bos : null, addEos && specials.Eos.Count > 0 ? specials.Eos[0] : null);
        }

        return vocabulary.Finish(kind + $" ({TokenizerJson})", path, normalizer, preTokenizer, tokenModel, decoder, template, specials,
            settings.CleanUpTokenizationSpaces ?? IsBertClass(settings));
    }

    private static string InferModelType(JsonElement model) =>
        model.Has("merges") ? "BPE"
        : model.Optional("vocab") is { ValueKind: JsonValueKind.Array } ? "Unigram"
        : model.Has("continuing_subword_prefix") || model.Has("max_input_chars_per_word") ? "WordPiece"
        : "WordLevel";

    private static TokenizerParts LoadSentencePiece(string path, TokenizerSettings settings)
    {
        byte[] bytes = File.ReadAllBytes(path);
        SentencePieceModelFile file = SentencePieceModelFile.Parse(bytes, path);
        SentencePieceTokenizer sp;
        try
        {
            sp = SentencePieceTokenizer.Create(new MemoryStream(bytes), addBeginningOfSentence: false, addEndOfSentence: false);
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException or NotSupportedException or Google.Protobuf.InvalidProtocolBufferException)
        {
            throw new NotSupportedException($"'{path}': Microsoft.ML.Tokenizers cannot load this SentencePiece model ({ex.Message}).", ex);
        }

        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        var added = new List<AddedToken>();
        for (int id = 0; id < file.Pieces.Count; id++)
        {
            (string piece, _, SentencePieceModelFile.PieceType type) = file.Pieces[id];
            vocab.TryAdd(piece, id);
            // Control pieces (<s>, </s>) and <unk> are special tokens in transformers, so "<s>" in text is BOS.
            if (type is SentencePieceModelFile.PieceType.Control or SentencePieceModelFile.PieceType.Unknown && piece.Length > 0)
            {
                added.Add(new AddedToken(id, piece, Special: true));
            }
        }

        int? IdIfValid(int id) => id >= 0 && id < file.Pieces.Count ? id : null;
        var vocabulary = new Vocabulary(vocab, added, settings);
        ResolvedSpecialTokens specials = vocabulary.Resolve(
            IdIfValid(file.BosId), IdIfValid(file.EosId), IdIfValid(file.PadId), IdIfValid(file.UnkId) is int u ? file.Pieces[u].Piece : null);

        // transformers' LlamaTokenizer: add_bos_token defaults to true, add_eos_token to false (T5 appends </s>).
        bool t5 = settings.TokenizerClass?.StartsWith("T5", StringComparison.Ordinal) == true;
        bool addBosToken = settings.AddBosToken ?? !t5;
        bool addEosToken = settings.AddEosToken ?? t5;
        SpecialTokenTemplate template = SpecialTokenTemplate.BosEos(
            addBosToken ? specials.Bos : null, addEosToken && specials.Eos.Count > 0 ? specials.Eos[0] : null);

        // The decoder LlamaConverter writes into tokenizer.json: '▁' → ' ', byte tokens → UTF-8, drop the dummy prefix.
        TokenDecoder decoder = new SequenceDecoder([
            new ReplaceDecoder(TextPattern.Literal("\u2581"), " "),
            new ByteFallbackDecoder(),
            new FuseDecoder(),
            new StripDecoder(' ', file.AddDummyPrefix ? 1 : 0, 0),
        ]);
        string kind = file.Model switch
        {
            SentencePieceModelFile.ModelType.Bpe => "SentencePiece BPE",
            SentencePieceModelFile.ModelType.Unigram => "SentencePiece Unigram",
            var other => $"SentencePiece {other}",
        };
        var model = new SentencePieceTokenModel(sp, file, dummyPrefixOnlyAtStart: settings.Legacy == false);
        return vocabulary.Finish($"{kind} ({SentencePieceModel})", path, null, null, model, decoder, template, specials,
            settings.CleanUpTokenizationSpaces ?? false);
    }

    private static TokenizerParts LoadBertVocab(string path, TokenizerSettings settings)
    {
        // transformers' load_vocab: one token per line, id = line number, a repeated token keeps its last line.
        string[] lines = File.ReadAllLines(path);
        if (lines.Length == 0)
        {
            throw new InvalidDataException($"'{path}' is empty; a WordPiece vocab.txt has one token per line.");
        }
        var vocab = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < lines.Length; id++)
        {
            vocab[lines[id]] = id;
        }

        // BertTokenizer's defaults apply when the config files do not name these tokens.
        string? Present(string key, string fallback)
        {
            TokenSetting s = settings.Token(key);
            string? token = s.Mentioned ? s.Token : fallback;
            return token is not null && vocab.ContainsKey(token) ? token : null;
        }
        string? unk = Present("unk_token", "[UNK]"), sep = Present("sep_token", "[SEP]"), pad = Present("pad_token", "[PAD]"),
            cls = Present("cls_token", "[CLS]"), mask = Present("mask_token", "[MASK]");
        var added = new[] { unk, sep, pad, cls, mask }.OfType<string>().Select(t => new AddedToken(vocab[t], t, Special: true)).ToList();

        // The pipeline transformers' BertConverter builds from a slow BertTokenizer. Microsoft.ML.Tokenizers'
        // BertTokenizer is not used: 2.0.1 drops every symbol character ("$5" → "5", "a+b" → "a b", emoji → nothing)
        // where BERT keeps ASCII symbols as punctuation tokens and maps the rest to word pieces or [UNK].
        bool lowercase = settings.DoLowerCase ?? true;
        var normalizer = new BertNormalizer(cleanText: true, handleChineseChars: settings.TokenizeChineseChars ?? true,
            stripAccents: settings.StripAccents, lowercase: lowercase);
        PreTokenizerStep preTokenizer = settings.DoBasicTokenize == false
            ? new CharSplitPreTokenizer(System.Text.Rune.IsWhiteSpace, SplitBehavior.Removed)
            : new BertPreTokenizer();
        if (unk is null)
        {
            throw new InvalidDataException($"'{path}' has no unknown token ({settings.Token("unk_token").Token ?? "[UNK]"}); WordPiece needs one.");
        }
        var model = WordPieceTokenModel.Create(vocab, unk, "##", 100, path);

        var vocabulary = new Vocabulary(vocab, added, settings);
        ResolvedSpecialTokens specials = vocabulary.Resolve(null, null, pad is null ? null : vocab[pad], unk) with
        {
            Cls = cls is null ? null : vocab[cls],
            Sep = sep is null ? null : vocab[sep],
            Mask = mask is null ? null : vocab[mask],
        };
        SpecialTokenTemplate template = specials is { Cls: int c, Sep: int s } ? SpecialTokenTemplate.Bert(c, s) : SpecialTokenTemplate.Plain;
        return vocabulary.Finish($"WordPiece ({WordPieceVocab})", path, normalizer, preTokenizer, model,
            new WordPieceDecoder("##", cleanup: true), template, specials, settings.CleanUpTokenizationSpaces ?? true);
    }

    private static bool IsBertClass(TokenizerSettings settings) =>
        settings.TokenizerClass is "BertTokenizer" or "BertTokenizerFast";

    private static bool Contains<T>(this PreTokenizerStep? step) where T : PreTokenizerStep =>
        step is T || (step is SequencePreTokenizer seq && seq.Steps.Any(s => s.Contains<T>()));

    private static bool Contains<T>(this TokenDecoder? decoder) where T : TokenDecoder =>
        decoder is T || (decoder is SequenceDecoder seq && seq.Steps.Any(s => s.Contains<T>()));
}
