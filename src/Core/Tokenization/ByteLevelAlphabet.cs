using System.Text;

namespace LoraPS.Tokenization;

/// <summary>
/// GPT-2's reversible byte ↔ character table ("bytes_to_unicode"). Byte-level BPE vocabularies are written in
/// these characters, so that every UTF-8 byte — including spaces and control bytes — is a visible symbol:
/// printable Latin-1 bytes map to themselves, the other 68 bytes to U+0100.. in byte order (space → 'Ġ', '\n' → 'Ċ').
/// </summary>
internal static class ByteLevelAlphabet
{
    private static readonly char[] ByteToChar = BuildTable();
    private static readonly Dictionary<char, byte> CharToByte =
        Enumerable.Range(0, 256).ToDictionary(b => ByteToChar[b], b => (byte)b);

    /// <summary>The character that stands for <paramref name="b"/> in a byte-level vocabulary.</summary>
    public static char Symbol(byte b) => ByteToChar[b];

    /// <summary>The byte behind a byte-level character, when it is one.</summary>
    public static bool TryGetByte(char symbol, out byte b) => CharToByte.TryGetValue(symbol, out b);

    /// <summary>Maps text to its UTF-8 bytes written as byte-level characters ("Hello world" → "HelloĠworld").</summary>
    public static string Encode(string text)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(text);
        var chars = new char[bytes.Length];
        for (int i = 0; i < bytes.Length; i++)
        {
            chars[i] = ByteToChar[bytes[i]];
        }
        return new string(chars);
    }

    private static char[] BuildTable()
    {
        var table = new char[256];
        int next = 0;
        for (int b = 0; b < 256; b++)
        {
            bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            table[b] = printable ? (char)b : (char)(256 + next++);
        }
        return table;
    }
}
