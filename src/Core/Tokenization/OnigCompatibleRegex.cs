using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.RegularExpressions;

namespace LoraPS.Tokenization;

/// <summary>
/// Runs a Hugging Face tokenizer regex (written for Oniguruma, which matches whole code points) on .NET's
/// regex engine (which matches UTF-16 code units).
/// </summary>
/// <remarks>
/// The two engines agree on the syntax these patterns use (<c>\p{L}</c>, <c>\p{N}</c>, <c>(?i:'s|'t)</c>,
/// <c>\s+(?!\S)</c>) but not on characters outside the BMP: to .NET an emoji or 𝐀 is two surrogates of category
/// Cs, so <c>[^\r\n\p{L}\p{N}]?\p{L}+</c> (Qwen2, Llama 3) splits "🙂abc" differently from the Rust tokenizer.
/// Microsoft.ML.Tokenizers' <c>RegexPreTokenizer</c> has the same limitation, so we match on a projection of
/// the text where every supplementary code point becomes one BMP stand-in of the same Unicode category, then map
/// the match offsets back. Category-based patterns then see exactly what Oniguruma sees.
/// </remarks>
internal sealed class OnigCompatibleRegex
{
    // Compiling a pattern costs milliseconds; tokenizers of one family share theirs.
    private static readonly ConcurrentDictionary<string, Regex> Compiled = new(StringComparer.Ordinal);

    private readonly Regex _regex;

    public OnigCompatibleRegex(string pattern, string source)
    {
        Pattern = pattern;
        try
        {
            _regex = Compiled.GetOrAdd(pattern, p => new Regex(p, RegexOptions.CultureInvariant | RegexOptions.Compiled));
        }
        catch (ArgumentException ex)
        {
            throw new NotSupportedException(
                $"{source}: the regular expression '{pattern}' cannot be compiled by .NET ({ex.Message}).", ex);
        }
    }

    public string Pattern { get; }

    /// <summary>Non-overlapping matches, left to right, as (start, length) in UTF-16 indices of <paramref name="text"/>.</summary>
    public List<(int Start, int Length)> Matches(string text)
    {
        var result = new List<(int, int)>();
        if (!ContainsSurrogate(text))
        {
            for (Match m = _regex.Match(text); m.Success; m = m.NextMatch())
            {
                result.Add((m.Index, m.Length));
            }
            return result;
        }

        (string projected, int[] toOriginal) = Project(text);
        for (Match m = _regex.Match(projected); m.Success; m = m.NextMatch())
        {
            int start = toOriginal[m.Index];
            result.Add((start, toOriginal[m.Index + m.Length] - start));
        }
        return result;
    }

    /// <summary>Replaces every match with <paramref name="replacement"/> (taken literally).</summary>
    public string Replace(string text, string replacement)
    {
        List<(int Start, int Length)> matches = Matches(text);
        if (matches.Count == 0)
        {
            return text;
        }
        var sb = new StringBuilder(text.Length);
        int last = 0;
        foreach ((int start, int length) in matches)
        {
            sb.Append(text, last, start - last).Append(replacement);
            last = start + length;
        }
        return sb.Append(text, last, text.Length - last).ToString();
    }

    private static bool ContainsSurrogate(string text)
    {
        foreach (char c in text)
        {
            if (char.IsSurrogate(c))
            {
                return true;
            }
        }
        return false;
    }

    private static (string Projected, int[] ToOriginal) Project(string text)
    {
        var sb = new StringBuilder(text.Length);
        var map = new List<int>(text.Length + 1);
        for (int i = 0; i < text.Length; i++)
        {
            map.Add(i);
            if (char.IsHighSurrogate(text[i]) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                int codePoint = char.ConvertToUtf32(text[i], text[i + 1]);
                sb.Append(StandIn(CharUnicodeInfo.GetUnicodeCategory(codePoint)));
                i++;
            }
            else
            {
                sb.Append(text[i]);
            }
        }
        map.Add(text.Length);
        return (sb.ToString(), map.ToArray());
    }

    /// <summary>
    /// A BMP character of the given category. None is ASCII, so patterns that name ASCII characters
    /// (<c>'s</c>, <c>[\r\n/]</c>) never match a stand-in by accident.
    /// </summary>
    internal static char StandIn(UnicodeCategory category) => category switch
    {
        UnicodeCategory.UppercaseLetter => '\u0391',       // Α
        UnicodeCategory.LowercaseLetter => '\u03B1',       // α
        UnicodeCategory.TitlecaseLetter => '\u01C5',       // ǅ
        UnicodeCategory.ModifierLetter => '\u02B0',        // ʰ
        UnicodeCategory.OtherLetter => '\u05D0',           // א
        UnicodeCategory.NonSpacingMark => '\u0300',
        UnicodeCategory.SpacingCombiningMark => '\u0903',
        UnicodeCategory.EnclosingMark => '\u20DD',
        UnicodeCategory.DecimalDigitNumber => '\u0660',    // ٠
        UnicodeCategory.LetterNumber => '\u2160',          // Ⅰ
        UnicodeCategory.OtherNumber => '\u00B2',           // ²
        UnicodeCategory.SpaceSeparator => '\u2000',
        UnicodeCategory.LineSeparator => '\u2028',
        UnicodeCategory.ParagraphSeparator => '\u2029',
        UnicodeCategory.Control => '\u0085',
        UnicodeCategory.Format => '\u200B',
        UnicodeCategory.PrivateUse => '\uE000',
        UnicodeCategory.ConnectorPunctuation => '\u203F',  // ‿
        UnicodeCategory.DashPunctuation => '\u2010',       // ‐
        UnicodeCategory.OpenPunctuation => '\u2045',       // ⁅
        UnicodeCategory.ClosePunctuation => '\u2046',      // ⁆
        UnicodeCategory.InitialQuotePunctuation => '\u00AB', // «
        UnicodeCategory.FinalQuotePunctuation => '\u00BB', // »
        UnicodeCategory.OtherPunctuation => '\u00B6',      // ¶
        UnicodeCategory.MathSymbol => '\u00AC',            // ¬
        UnicodeCategory.CurrencySymbol => '\u00A2',        // ¢
        UnicodeCategory.ModifierSymbol => '\u02C2',        // ˂
        UnicodeCategory.OtherSymbol => '\u00A9',           // ©
        _ => '\uFFFF',                                      // OtherNotAssigned
    };
}
